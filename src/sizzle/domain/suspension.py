"""Why an operator suspends an account, and how the user is told (pure: no I/O)."""

from __future__ import annotations

from enum import StrEnum

MAX_NOTE = 500


class SuspensionReason(StrEnum):
    ACCEPTABLE_USE = "acceptable_use"
    PAYMENT = "payment"
    SECURITY = "security"
    OTHER = "other"


# What the operator picks from; all but OTHER are also what the user reads ("suspended for …").
REASON_LABELS = {
    SuspensionReason.ACCEPTABLE_USE: "breaking the Acceptable Use Policy",
    SuspensionReason.PAYMENT: "a payment problem (a payment was reversed or disputed)",
    SuspensionReason.SECURITY: "its safety (someone else may be using it)",
    SuspensionReason.OTHER: "another reason (write it in the note)",
}


def suspended_message(reason: str | None, note: str | None) -> str:
    """What a suspended user reads when refused: why, in the operator's words too, and what
    to do next."""
    known = reason if reason in set(SuspensionReason) else None
    if known is None or known == SuspensionReason.OTHER:
        why = "This account is suspended."
    else:
        why = f"This account is suspended for {REASON_LABELS[SuspensionReason(known)]}."
    if note and note.strip():
        why += f" The operator wrote: “{note.strip().rstrip('.')}”."
    if known == SuspensionReason.ACCEPTABLE_USE:
        why += " The policy is at /legal/acceptable-use."
    return (
        f"{why} Your sessions were stopped and nothing more is charged. If you think this is a "
        "mistake, write to us (the contact address is at the end of the Terms of Service, "
        "/legal/terms) and we will look again."
    )
