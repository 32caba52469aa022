"""The metering job: one set-based pass, then stop the sessions that ran out of money."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import select

from sizzle.db.database import Database
from sizzle.db.models import GpuSession
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.providers.base import Provider
from sizzle.services.lifecycle import switch_status
from sizzle.services.metering import MeterResult, charge_due_minutes
from sizzle.services.sessions import release_session

log = structlog.get_logger(__name__)


async def run_metering_pass(
    db: Database, providers: dict[str, Provider], *, now: datetime
) -> MeterResult:
    """Charge every due minute; a session whose next minute cannot be paid ends at its paid time."""
    async with db.transaction() as tx:
        result = await charge_due_minutes(tx, now=now)
        if result.starved_session_ids:
            starved = await tx.scalars(
                select(GpuSession)
                .where(GpuSession.id.in_(result.starved_session_ids))
                .with_for_update()
            )
            for session in starved:
                await tx.refresh(session)
                await switch_status(
                    tx,
                    session,
                    SessionStatus.STOPPING,
                    actor="system:metering",
                    now=now,
                    end_reason=EndReason.INSUFFICIENT_CREDITS,
                    already_metered=True,
                )
    if result.minutes_charged:
        log.info(
            "metering.pass", minutes=result.minutes_charged, starved=len(result.starved_session_ids)
        )
    for session_id in result.starved_session_ids:
        await release_session(db, providers, session_id=session_id, now=now)
    return result
