"""What a user asked to be mailed: each kind of notification on or off (money-critical kinds
always on), and how often a running session is told of.

A kind turned off is still shown in the inbox; only its mail is not sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import NotificationOptOut, User
from sizzle.domain.lab import LAB_NAME
from sizzle.errors import ValidationFailed
from sizzle.services.notifications import Kind

# How often "still running" may be told, in hours of billable time; 0 is never.
STILL_RUNNING_CHOICES = (1, 2, 4, 8, 0)
MONEY_CRITICAL_WHY = (
    "Mails about money you are spending, or about to spend, always go out, so that a bill never "
    "comes as a surprise."
)


@dataclass(frozen=True)
class KindText:
    label: str
    sentence: str


KIND_TEXTS: dict[Kind, KindText] = {
    Kind.SESSION_READY: KindText(
        "Your GPU is ready", "When a GPU you launched is ready, if you are not on its page."
    ),
    Kind.STILL_RUNNING: KindText(
        "Still running",
        "A reminder while a session keeps running: after its first hour, then as often as you "
        "choose below.",
    ),
    Kind.CREDIT_LOW: KindText(
        "Running low",
        "When what you have left pays for fewer than 10 minutes of a running session.",
    ),
    Kind.SESSION_AUTO_STOPPED: KindText(
        "Session stopped for you",
        "When Sizzle stops a session: the credit ran out, or it reached the time you set.",
    ),
    Kind.IDLE_WARNING: KindText(
        "About to stop an idle GPU", "A couple of minutes before an unused session is stopped."
    ),
    Kind.IDLE_STOPPED: KindText(
        "Idle GPU stopped", "When a session was stopped because nothing was using it."
    ),
    Kind.TOP_UP_CHARGED: KindText(
        "Auto top-up charged", "When your saved card was charged by auto top-up."
    ),
    Kind.TOP_UP_FAILED: KindText(
        "Auto top-up failed", "When an auto top-up charge did not go through."
    ),
    Kind.PLAN_RENEWAL: KindText(
        f"{LAB_NAME} payments", f"When a month of {LAB_NAME} is paid, or its payment failed."
    ),
    Kind.BUDGET_WARNING: KindText(
        "Monthly budget nearly used", "When you have spent 75 % and then 90 % of your budget."
    ),
    Kind.BUDGET_REACHED: KindText(
        "Monthly budget reached",
        "When your monthly budget is spent and running sessions are stopped.",
    ),
    Kind.QUEUED_LAUNCH_READY: KindText(
        "Your waiting launch is ready",
        "When a GPU you asked to wait for became free and is ready.",
    ),
    Kind.QUEUED_LAUNCH_ENDED: KindText(
        "Your wait for a GPU ended",
        "When a launch you asked to wait for stops waiting: no GPU came free in time, or it "
        "could not be launched any more.",
    ),
}


@dataclass(frozen=True)
class KindPreference:
    kind: Kind
    label: str
    sentence: str
    mailed: bool
    can_turn_off: bool


@dataclass(frozen=True)
class Preferences:
    kinds: list[KindPreference]
    still_running_every_hours: int


def still_running_text(hours: int) -> str:
    """'every hour', 'every 4 hours', 'never'."""
    if hours == 0:
        return "never"
    return "every hour" if hours == 1 else f"every {hours} hours"


async def read_preferences(tx: AsyncSession, user: User) -> Preferences:
    """Every kind, whether it is mailed, and the "still running" interval."""
    off = set(
        await tx.scalars(
            select(NotificationOptOut.kind).where(NotificationOptOut.user_id == user.id)
        )
    )
    kinds = [
        KindPreference(
            kind=kind,
            label=KIND_TEXTS[kind].label,
            sentence=KIND_TEXTS[kind].sentence,
            mailed=kind.money_critical or kind.value not in off,
            can_turn_off=not kind.money_critical,
        )
        for kind in Kind
    ]
    return Preferences(kinds=kinds, still_running_every_hours=user.still_running_every_hours)


def _parse_kind(name: str) -> Kind:
    try:
        return Kind(name)
    except ValueError:
        raise ValidationFailed(
            f"there is no kind of notification called {name[:40]!r}; the kinds are "
            + ", ".join(kind.value for kind in Kind),
            code="unknown_notification_kind",
        ) from None


async def set_preferences(
    tx: AsyncSession,
    user: User,
    *,
    mailed: Mapping[str, bool] | None = None,
    still_running_every_hours: int | None = None,
) -> None:
    """Turn kinds' mails on or off (those not named stay as they are), and set how often
    "still running" is told. A money-critical kind cannot be turned off (422)."""
    changes = {_parse_kind(name): on for name, on in (mailed or {}).items()}
    critical = [kind for kind, on in changes.items() if kind.money_critical and not on]
    if critical:
        raise ValidationFailed(
            f"“{KIND_TEXTS[critical[0]].label}” mails cannot be turned off. " + MONEY_CRITICAL_WHY,
            code="money_critical",
        )
    if still_running_every_hours is not None:
        if still_running_every_hours not in STILL_RUNNING_CHOICES:
            raise ValidationFailed(
                "“still running” reminders come every 1, 2, 4 or 8 hours, or never (0)",
                code="bad_reminder_interval",
            )
        user.still_running_every_hours = still_running_every_hours
    turned_on = [kind.value for kind, on in changes.items() if on]
    if turned_on:
        await tx.execute(
            delete(NotificationOptOut).where(
                NotificationOptOut.user_id == user.id, NotificationOptOut.kind.in_(turned_on)
            )
        )
    already_off = set(
        await tx.scalars(
            select(NotificationOptOut.kind).where(NotificationOptOut.user_id == user.id)
        )
    )
    for kind, on in changes.items():
        if not on and kind.value not in already_off:
            tx.add(NotificationOptOut(user_id=user.id, kind=kind.value))
    await tx.flush()
