"""What Sizzle tells a user, and the one way to tell it.

`notify` records a notification in the caller's transaction, next to the change it tells of
(a session that ran out of credit, an idle stop, a charged top-up): it exists exactly when that
change committed, and its `key` makes it once only, however often a job retries and however many
replicas run the job. The inbox shows it at once; a job mails it later, with retries, never from
a request.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.clock import to_ms
from sizzle.db.models import GpuSession, Notification, NotificationOptOut

# A live page marks itself seen about every PAGE_SEEN_EVERY; one not marked for PAGE_GONE_AFTER
# is closed.
PAGE_SEEN_EVERY = timedelta(seconds=20)
PAGE_GONE_AFTER = timedelta(seconds=60)


class Kind(StrEnum):
    """Every kind of notification. The money-critical ones are always mailed."""

    SESSION_READY = "session_ready"
    STILL_RUNNING = "still_running"
    CREDIT_LOW = "credit_low"
    SESSION_AUTO_STOPPED = "session_auto_stopped"  # credit ran out, time or spending limit
    IDLE_WARNING = "idle_warning"
    IDLE_STOPPED = "idle_stopped"
    TOP_UP_CHARGED = "top_up_charged"
    TOP_UP_FAILED = "top_up_failed"
    PLAN_RENEWAL = "plan_renewal"
    BUDGET_WARNING = "budget_warning"
    BUDGET_REACHED = "budget_reached"
    QUEUED_LAUNCH_READY = "queued_launch_ready"
    QUEUED_LAUNCH_ENDED = "queued_launch_ended"  # expired, or no longer allowed

    @property
    def money_critical(self) -> bool:
        """Whether a user may turn its mail off: never for one about money already spent or
        about to be."""
        return self in MONEY_CRITICAL


MONEY_CRITICAL = frozenset(
    {
        Kind.CREDIT_LOW,
        Kind.SESSION_AUTO_STOPPED,
        Kind.TOP_UP_CHARGED,
        Kind.TOP_UP_FAILED,
        Kind.PLAN_RENEWAL,
        Kind.BUDGET_WARNING,
        Kind.BUDGET_REACHED,
    }
)


def page_open(session: GpuSession, now: datetime) -> bool:
    """Whether a browser had the session's live page open a moment ago."""
    seen = session.page_seen_ms
    return seen is not None and to_ms(now) - seen < PAGE_GONE_AFTER.total_seconds() * 1000


async def notify(
    tx: AsyncSession,
    *,
    user_id: str,
    kind: Kind,
    key: str,
    title: str,
    body: str,
    now: datetime,
    link: str | None = None,
    session_id: str | None = None,
    mail: bool = True,
) -> bool:
    """Tell `user_id` about something, in `tx`: True when this made the notification, False
    when one with `key` already exists. It is mailed (later, by the mail job) unless `mail` is
    False (say, the page already shows it) or the user turned the kind off."""
    if mail and not kind.money_critical:
        mail = not await _turned_off(tx, user_id, kind)
    values = {
        "id": uuid.uuid4().hex,
        "user_id": user_id,
        "kind": kind.value,
        "key": key,
        "title": title,
        "body": body,
        "link": link,
        "session_id": session_id,
        "created_at": now,
        "mail_status": "pending" if mail else "off",
        "mail_attempts": 0,
        "mail_due_at": now if mail else None,
    }
    insert = postgresql.insert if tx.get_bind().dialect.name == "postgresql" else sqlite.insert
    made = await tx.execute(
        insert(Notification).values(**values).on_conflict_do_nothing(index_elements=["key"])
    )
    return bool(made.rowcount)  # type: ignore[attr-defined]


async def _turned_off(tx: AsyncSession, user_id: str, kind: Kind) -> bool:
    opted_out = exists().where(
        NotificationOptOut.user_id == user_id, NotificationOptOut.kind == kind.value
    )
    return bool(await tx.scalar(select(opted_out)))
