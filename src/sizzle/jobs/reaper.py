"""The reaper: ends abandoned, over-long and over-paused sessions, and finishes releases."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, and_, or_, select

from sizzle.db.database import Database
from sizzle.db.models import GpuSession
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.domain.money import MS_PER_MINUTE
from sizzle.providers.base import Provider
from sizzle.services import notification_events
from sizzle.services.lifecycle import active_ms, reached_max_minutes, switch_status
from sizzle.services.sessions import lock_session, release_session
from sizzle.settings import Settings

S = SessionStatus
ACTOR = "system:reaper"


def _overdue_reason(session: GpuSession, now: datetime, settings: Settings) -> EndReason | None:
    status = S(session.status)
    if status is S.READY and session.ready_at is not None:
        if now - session.ready_at >= timedelta(minutes=settings.abandon_minutes):
            return EndReason.ABANDONED
    elif status is S.ACTIVE and session.max_minutes is not None:
        if active_ms(session, now) >= session.max_minutes * MS_PER_MINUTE:
            return EndReason.MAX_MINUTES
    elif status is S.PAUSED and session.paused_at is not None:
        if now - session.paused_at >= timedelta(hours=settings.max_pause_hours):
            return EndReason.PAUSE_EXPIRED
    return None


def _overdue_query(now: datetime, settings: Settings) -> Select[str]:
    """Sessions that may be past a limit; `_overdue_reason` has the last word on each."""
    return select(GpuSession.id).where(
        or_(
            and_(
                GpuSession.status == S.READY.value,
                GpuSession.ready_at <= now - timedelta(minutes=settings.abandon_minutes),
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
        candidates = list(await tx.scalars(_overdue_query(now, settings)))
    stopped: list[str] = []
    for session_id in candidates:
        async with db.transaction() as tx:
            session = await lock_session(tx, session_id, user_id=None)
            reason = _overdue_reason(session, now, settings)
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
