"""The session state machine: statuses, the transition table and end reasons. Pure."""

from __future__ import annotations

from enum import StrEnum


class SessionStatus(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    READY = "ready"
    ACTIVE = "active"
    PAUSED = "paused"
    STOPPING = "stopping"
    TERMINATED = "terminated"
    FAILED = "failed"

    def is_terminal(self) -> bool:
        return self in (SessionStatus.TERMINATED, SessionStatus.FAILED)

    def is_live(self) -> bool:
        """Counts toward the plan's sessions at once: neither ended nor on its way out."""
        return not self.is_terminal() and self is not SessionStatus.STOPPING


class EndReason(StrEnum):
    USER = "user"
    ABANDONED = "abandoned"
    MAX_MINUTES = "max_minutes"
    PAUSE_EXPIRED = "pause_expired"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    BUDGET = "budget"  # the account's monthly budget was reached
    PROVISIONING_FAILED = "provisioning_failed"
    PROVIDER_LOST = "provider_lost"
    ACCOUNT_SUSPENDED = "account_suspended"
    ACCOUNT_DELETED = "account_deleted"
    IDLE = "idle"


S = SessionStatus

TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    S.PENDING: frozenset({S.PROVISIONING, S.STOPPING, S.FAILED}),
    S.PROVISIONING: frozenset({S.READY, S.STOPPING, S.FAILED}),
    S.READY: frozenset({S.ACTIVE, S.STOPPING, S.FAILED}),
    S.ACTIVE: frozenset({S.PAUSED, S.STOPPING, S.FAILED}),
    S.PAUSED: frozenset({S.ACTIVE, S.STOPPING, S.FAILED}),
    S.STOPPING: frozenset({S.TERMINATED, S.FAILED}),
    S.TERMINATED: frozenset(),
    S.FAILED: frozenset(),
}


def can_transition(current: SessionStatus, target: SessionStatus) -> bool:
    """Whether the table allows moving a session from `current` to `target`."""
    return target in TRANSITIONS[current]
