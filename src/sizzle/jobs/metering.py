"""The metering job: one set-based pass, then end the sessions that ran out of money or time
(their owners told why), and tell those running low."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.database import Database
from sizzle.db.models import GpuSession
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.providers.base import Provider
from sizzle.services import notification_events
from sizzle.services.budget import over_budget_sessions
from sizzle.services.lifecycle import reached_max_minutes, switch_status
from sizzle.services.metering import MeterResult, charge_due_minutes
from sizzle.services.sessions import release_session

log = structlog.get_logger(__name__)
ACTOR = "system:metering"


async def run_metering_pass(
    db: Database, providers: dict[str, Provider], *, now: datetime
) -> MeterResult:
    """Charge every due minute. A session whose next minute cannot be paid ends at its paid
    time, for want of money or because the monthly budget is reached (then every running
    session of its user ends); one that reached its `max_minutes` ends there (all billed
    exactly to that point)."""
    async with db.transaction() as tx:
        result = await charge_due_minutes(tx, now=now)
        no_money = set(result.starved_session_ids) - set(result.over_budget_session_ids)
        ended = await _end_sessions(tx, sorted(no_money), EndReason.INSUFFICIENT_CREDITS, now=now)
        # The sessions the budget refused a minute for, and every other running session of a
        # user whose budget is reached: all end at their paid time.
        over = set(result.over_budget_session_ids) | set(await over_budget_sessions(tx, now=now))
        stopped_for_budget = await _end_sessions(tx, sorted(over), EndReason.BUDGET, now=now)
        ended += stopped_for_budget
        at_limit = list(await tx.scalars(select(GpuSession.id).where(reached_max_minutes(now))))
        ended += await _end_sessions(tx, at_limit, EndReason.MAX_MINUTES, now=now)
        await notification_events.tell_credit_low(tx, now=now)
    if result.minutes_charged or ended:
        log.info(
            "metering.pass",
            minutes=result.minutes_charged,
            ended=len(ended),
            budget_stops=len(stopped_for_budget),
        )
    for session_id in ended:
        await release_session(db, providers, session_id=session_id, now=now)
    return replace(result, stopped_for_budget=stopped_for_budget)


async def _end_sessions(
    tx: AsyncSession, session_ids: list[str], reason: EndReason, *, now: datetime
) -> list[str]:
    """Move the (already metered) sessions to stopping; the ids of those moved."""
    if not session_ids:
        return []
    sessions = await tx.scalars(
        select(GpuSession)
        .where(GpuSession.id.in_(session_ids), GpuSession.status == SessionStatus.ACTIVE.value)
        .with_for_update()
    )
    ended = []
    for session in sessions:
        await tx.refresh(session)
        await switch_status(
            tx,
            session,
            SessionStatus.STOPPING,
            actor=ACTOR,
            now=now,
            end_reason=reason,
            already_metered=True,
        )
        await notification_events.session_auto_stopped(tx, session, reason, now=now)
        ended.append(session.id)
    return ended
