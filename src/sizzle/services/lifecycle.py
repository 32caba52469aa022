"""The one function that changes a session's status, and the bookkeeping each change implies."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import ColumnElement, and_
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.clock import to_ms
from sizzle.db.models import GpuSession, SessionEvent
from sizzle.domain.lifecycle import EndReason, SessionStatus, can_transition
from sizzle.domain.money import MS_PER_MINUTE, minutes_started
from sizzle.errors import InvalidTransition
from sizzle.services import audit, ledger
from sizzle.services.metering import charge_due_minutes
from sizzle.workload import keys

log = structlog.get_logger(__name__)

S = SessionStatus
ENDED = (S.STOPPING, S.FAILED, S.TERMINATED)


def active_ms(session: GpuSession, now: datetime) -> int:
    """Billable time so far: finished active spans plus the current one."""
    current = 0
    if session.active_since_ms is not None:
        current = max(to_ms(now) - session.active_since_ms, 0)
    return session.active_ms_before + current


def reached_max_minutes(now: datetime) -> ColumnElement[bool]:
    """SQL: an active session whose billable time has reached its `max_minutes`."""
    active_ms_now = GpuSession.active_ms_before + (to_ms(now) - GpuSession.active_since_ms)
    return and_(
        GpuSession.status == S.ACTIVE.value,
        GpuSession.max_minutes.is_not(None),
        active_ms_now >= GpuSession.max_minutes * MS_PER_MINUTE,
    )


async def switch_status(
    tx: AsyncSession,
    session: GpuSession,
    target: SessionStatus,
    *,
    actor: str,
    now: datetime,
    reason: str | None = None,
    end_reason: EndReason | None = None,
    already_metered: bool = False,
) -> None:
    """Move `session` to `target` if the transition table allows it, and record who and why.

    Leaving `active` first charges every started minute, then freezes the billable time at
    what was paid for, so time that could not be paid is never counted. Ending gives back the
    minutes paid in advance beyond the billable time (the reconciler's repairs leave some).
    """
    current = S(session.status)
    if not can_transition(current, target):
        raise InvalidTransition(f"a {current} session cannot become {target}")

    if current is S.ACTIVE:
        if not already_metered:
            await charge_due_minutes(tx, now=now, session_ids=[session.id])
            await tx.refresh(session)
        _freeze_active_time(session, now)
    if current is S.PAUSED:
        session.paused_at = None
    if target in ENDED and current not in ENDED:
        await _refund_unused_minutes(tx, session, now)
        await keys.forget_session_key(tx, session.id)  # no way into its instance is kept

    if target is S.READY:
        session.ready_at = now
    elif target is S.ACTIVE:
        session.active_since_ms = to_ms(now)
        session.last_activity_ms = to_ms(now)  # the idle limit counts from here
        session.started_at = session.started_at or now
    elif target is S.PAUSED:
        session.paused_at = now
    elif target in (S.STOPPING, S.FAILED, S.TERMINATED):
        session.ended_at = session.ended_at or now
        session.end_reason = session.end_reason or (end_reason.value if end_reason else None)

    session.status = target.value
    tx.add(
        SessionEvent(
            session_id=session.id,
            from_status=current.value,
            to_status=target.value,
            actor=actor,
            reason=reason or (end_reason.value if end_reason else None),
            created_at=now,
        )
    )
    audit.record(
        tx,
        f"session.{target.value}",
        actor=actor,
        now=now,
        user_id=session.user_id,
        target=f"session:{session.id}",
        detail=reason or (end_reason.value if end_reason else None),
    )
    await tx.flush()
    log.info(
        "session.status",
        session_id=session.id,
        from_status=current,
        to_status=target,
        actor=actor,
        reason=reason or end_reason,
    )


def _freeze_active_time(session: GpuSession, now: datetime) -> None:
    """End the current active span, counting no more than the minutes charged."""
    paid_ms = session.charged_minutes * MS_PER_MINUTE
    session.active_ms_before = min(active_ms(session, now), paid_ms)
    session.active_since_ms = None


async def _refund_unused_minutes(tx: AsyncSession, session: GpuSession, now: datetime) -> None:
    """Give back the minutes charged beyond the session's billable time, now that it ends."""
    owed = minutes_started(session.active_ms_before)
    if session.charged_minutes <= owed:
        return
    refunded = await ledger.refund_session_minutes(
        tx, session.id, after_minute=owed, now=now, reason="paid in advance, never used"
    )
    session.charged_minutes = owed
    session.free_minutes_used -= refunded.free_minutes
    session.plan_minutes_used -= refunded.plan_minutes
    session.credit_charged_micros -= refunded.credit_micros
    log.info("session.unused_minutes_refunded", session_id=session.id, minutes=refunded.minutes)
