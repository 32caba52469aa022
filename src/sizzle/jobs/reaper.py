"""The reaper: ends abandoned, over-long and over-paused sessions, and finishes releases.

A ready session is kept `abandon_minutes` for its user to start it, or `queue_hold_minutes`
when it was launched from the queue: its user asked to be told, got a mail, and may be away.
Either way nothing is charged until it starts."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select

from sizzle.db.database import Database
from sizzle.db.models import GpuSession, QueuedLaunch
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.domain.money import MS_PER_MINUTE
from sizzle.providers.base import Provider
from sizzle.services import notification_events
from sizzle.services.lifecycle import active_ms, reached_max_minutes, switch_status
from sizzle.services.sessions import lock_session, release_session
from sizzle.settings import Settings

S = SessionStatus
ACTOR = "system:reaper"


def _from_queue() -> ColumnElement[bool]:
    """SQL: the session was launched from the queue ("tell me when it's free")."""
    return exists().where(QueuedLaunch.session_id == GpuSession.id)


def _held_for(settings: Settings, *, from_queue: bool) -> timedelta:
    """How long a ready session is kept for its user to start it."""
    minutes = settings.queue_hold_minutes if from_queue else settings.abandon_minutes
    return timedelta(minutes=minutes)


def _overdue_reason(
    session: GpuSession, now: datetime, settings: Settings, *, from_queue: bool
) -> EndReason | None:
    status = S(session.status)
    if status is S.READY and session.ready_at is not None:
        if now - session.ready_at >= _held_for(settings, from_queue=from_queue):
            return EndReason.ABANDONED
    elif status is S.ACTIVE and session.max_minutes is not None:
        if active_ms(session, now) >= session.max_minutes * MS_PER_MINUTE:
            return EndReason.MAX_MINUTES
    elif status is S.PAUSED and session.paused_at is not None:
        if now - session.paused_at >= timedelta(hours=settings.max_pause_hours):
            return EndReason.PAUSE_EXPIRED
    return None


def _overdue_query(now: datetime, settings: Settings) -> Select[str, bool]:
    """Sessions that may be past a limit, and whether each came from the queue;
    `_overdue_reason` has the last word on each."""
    from_queue = _from_queue()
    return select(GpuSession.id, from_queue).where(
        or_(
            and_(
                GpuSession.status == S.READY.value,
                GpuSession.ready_at <= now - _held_for(settings, from_queue=False),
                ~from_queue,
            ),
            and_(
                GpuSession.status == S.READY.value,
                GpuSession.ready_at <= now - _held_for(settings, from_queue=True),
                from_queue,
            ),
            and_(
                GpuSession.status == S.PAUSED.value,
                GpuSession.paused_at <= now - timedelta(hours=settings.max_pause_hours),
            ),
            reached_max_minutes(now),
        )
    )


async def reap(
    db: Database, providers: dict[str, Provider], settings: Settings, *, now: datetime
) -> int:
    """Stop every session past a limit; returns how many were stopped."""
    async with db.transaction() as tx:
        candidates = (await tx.execute(_overdue_query(now, settings))).all()
    stopped: list[str] = []
    for session_id, from_queue in candidates:
        async with db.transaction() as tx:
            session = await lock_session(tx, session_id, user_id=None)
            reason = _overdue_reason(session, now, settings, from_queue=bool(from_queue))
            if reason is None:
                continue
            await switch_status(tx, session, S.STOPPING, actor=ACTOR, now=now, end_reason=reason)
            await notification_events.session_auto_stopped(tx, session, reason, now=now)
            stopped.append(session_id)
    async with db.transaction() as tx:
        stopping = list(
            await tx.scalars(select(GpuSession.id).where(GpuSession.status == S.STOPPING.value))
        )
    for session_id in stopping:
        await release_session(db, providers, session_id=session_id, now=now)
    return len(stopped)
