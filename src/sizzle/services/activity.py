"""A session's use, as idle auto-stop counts it: requests through the workspace API, "Keep it
running", and GPU readings above the threshold.

Requests are counted in memory and written in batches off their path (`ActivityRecorder`), as
chat requests' rows are: a chat's first token never waits for a database write. "Keep it
running" is written at once, so that its answer already shows the new deadline."""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

import structlog
from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.clock import Clock, to_ms
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, SessionEvent, User
from sizzle.domain.lifecycle import SessionStatus
from sizzle.errors import Conflict
from sizzle.services.batched import BatchedWrites
from sizzle.services.sessions import get_session

log = structlog.get_logger(__name__)

S = SessionStatus
_table = cast(Table, GpuSession.__table__)
# One statement, run once per session of a batch (executemany): never moves a use back.
_TOUCH = (
    update(_table)
    .where(
        _table.c.id == bindparam("session_id"),
        or_(
            _table.c.last_activity_ms.is_(None),
            _table.c.last_activity_ms < bindparam("at_ms"),
        ),
    )
    .values(last_activity_ms=bindparam("at_ms"))
)


class ActivityRecorder(BatchedWrites):
    """Remembers the last use of each session in this process and writes them together: at
    most one transaction per `flush_seconds` however many requests run, and what is pending
    on shutdown (the idle check of this process flushes first, too). A crash loses at most
    that interval's uses: a session might then be warned a second early, never billed more."""

    def __init__(self, db: Database, clock: Clock, *, flush_seconds: float = 1.0) -> None:
        super().__init__(flush_seconds=flush_seconds)
        self.db = db
        self.clock = clock
        self._pending: dict[str, int] = {}

    def touch(self, session_id: str) -> None:
        """The session was used now (no I/O here: safe on a chat's path)."""
        at = to_ms(self.clock.now())
        if self._pending.get(session_id, -1) < at:
            self._pending[session_id] = at
        self.flush_soon()

    async def flush(self) -> None:
        """Write the uses pending now, in one transaction."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        rows = [{"session_id": sid, "at_ms": at} for sid, at in sorted(pending.items())]
        try:
            async with self.db.transaction() as tx:
                await tx.execute(_TOUCH, rows)
        except Exception as exc:  # counting use must never break a request
            log.warning("activity.record_failed", sessions=len(rows), error=str(exc))


async def mark_used(tx: AsyncSession, session_ids: Collection[str], *, at_ms: int) -> None:
    """Record a use of several sessions at `at_ms` in one statement (a busy GPU's reading)."""
    if session_ids:
        await tx.execute(
            update(GpuSession)
            .where(
                GpuSession.id.in_(sorted(session_ids)),
                or_(GpuSession.last_activity_ms.is_(None), GpuSession.last_activity_ms < at_ms),
            )
            .values(last_activity_ms=at_ms)
            .execution_options(synchronize_session=False)
        )


async def keep_alive(db: Database, *, session_id: str, user: User, now_ms: int) -> None:
    """ "Keep it running": the user's active session counts as used now. Another user's session
    is unknown (404); a session that is not running is a 409 that says what to do instead."""
    async with db.transaction() as tx:
        done = await tx.execute(
            update(GpuSession)
            .where(
                GpuSession.id == session_id,
                GpuSession.user_id == user.id,
                GpuSession.status == S.ACTIVE.value,
            )
            .values(last_activity_ms=now_ms)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount:  # type: ignore[attr-defined]
            return
        session = await get_session(tx, session_id, user_id=user.id)
    raise Conflict(_not_running(session.status), code="session_not_active")


def _not_running(status: str) -> str:
    if status == S.PAUSED.value:
        return "This session is paused, so it costs nothing now. Resume it to use it again."
    if status in (S.PENDING.value, S.PROVISIONING.value, S.READY.value):
        return (
            "This session has not started yet, so there is nothing to keep running. Start it first."
        )
    return "This session has ended, so it cannot be kept running. Launch a new one instead."


async def paused_for_idle(tx: AsyncSession, session_id: str) -> bool:
    """Whether the session's latest pause was idle auto-stop's (its page says so)."""
    latest = await tx.scalar(
        select(SessionEvent.reason)
        .where(SessionEvent.session_id == session_id, SessionEvent.to_status == S.PAUSED.value)
        .order_by(SessionEvent.id.desc())
        .limit(1)
    )
    return latest == "idle"
