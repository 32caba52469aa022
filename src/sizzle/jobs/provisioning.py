"""Provisioning: launch pending sessions through the orchestrator, and mark them ready.

A session is claimed (pending -> provisioning) in a short transaction with SKIP LOCKED, so
several workers never launch it twice; the provider is called outside any transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.database import Database
from sizzle.db.models import GpuSession, LaunchAttempt, ProviderInstance
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.domain.tiers import TIERS
from sizzle.errors import SizzleError
from sizzle.providers.base import InstanceState, Provider, instance_name
from sizzle.services.lifecycle import switch_status
from sizzle.services.metering import lock_billing
from sizzle.services.orchestrator import Attempt, Launch, Orchestrator

log = structlog.get_logger(__name__)

S = SessionStatus
ACTOR = "system:provisioner"
CLAIM_BATCH = 20
# A claimed session with no instance after this long lost its launcher (a crash mid-launch).
LAUNCH_DEADLINE = timedelta(minutes=10)


async def launch_pending(db: Database, orchestrator: Orchestrator, *, now: datetime) -> int:
    """Claim pending sessions and launch each on the best offer; returns how many were claimed."""
    async with db.transaction() as tx:
        await lock_billing(tx)
        claimed = list(
            await tx.scalars(
                select(GpuSession)
                .where(GpuSession.status == S.PENDING.value)
                .order_by(GpuSession.created_at)
                .limit(CLAIM_BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for session in claimed:
            await switch_status(tx, session, S.PROVISIONING, actor=ACTOR, now=now)
    for session in claimed:
        await _launch(db, orchestrator, session, now=now)
    return len(claimed)


async def _launch(
    db: Database, orchestrator: Orchestrator, session: GpuSession, *, now: datetime
) -> None:
    try:
        launch = await orchestrator.launch(
            TIERS[session.tier], session_id=session.id, model=session.model
        )
    except SizzleError as exc:
        async with db.transaction() as tx:
            await lock_billing(tx)
            record_attempts(tx, session.id, getattr(exc, "attempts", []))
            fresh = await tx.get(GpuSession, session.id, with_for_update=True)
            if fresh is not None and fresh.status == S.PROVISIONING.value:
                fresh.last_error = exc.message
                await switch_status(
                    tx,
                    fresh,
                    S.FAILED,
                    actor=ACTOR,
                    now=now,
                    reason=exc.message,
                    end_reason=EndReason.PROVISIONING_FAILED,
                )
        return
    offer = launch.offer
    async with db.transaction() as tx:
        await lock_billing(tx)
        record_attempts(tx, session.id, launch.attempts)
        fresh = await tx.get(GpuSession, session.id, with_for_update=True)
        # Stopped while the launch was in flight: nobody would pay for this instance.
        discarded = fresh is None or fresh.status != S.PROVISIONING.value
        if fresh is not None and not discarded:
            _record_launch(tx, fresh, launch, now=now)
    if discarded:
        await orchestrator.providers[offer.provider].terminate(launch.external_id)
        log.info("launch.discarded", session_id=session.id, provider=offer.provider)
        return
    log.info(
        "session.launched", session_id=session.id, provider=offer.provider, offer=offer.offer_id
    )


def record_attempts(tx: AsyncSession, session_id: str, attempts: list[Attempt]) -> None:
    """Keep the launch's attempt log on the session, for the operator."""
    tx.add_all(
        LaunchAttempt(
            session_id=session_id,
            provider=attempt.offer.provider,
            offer_id=attempt.offer.offer_id,
            gpu_type=attempt.offer.gpu_type,
            gpu_count=attempt.offer.gpu_count,
            upstream_micros_per_hour=attempt.offer.upstream_micros_per_hour,
            outcome=attempt.outcome,
            error=attempt.error,
            created_at=attempt.at,
        )
        for attempt in attempts
    )


def _record_launch(tx: AsyncSession, session: GpuSession, launch: Launch, *, now: datetime) -> None:
    """The GPU the session got, its upstream price, and the instance that now exists."""
    offer = launch.offer
    session.provider = offer.provider
    session.instance_id = launch.external_id
    session.gpu_type = offer.gpu_type
    session.gpu_count = offer.gpu_count
    session.upstream_micros_per_hour = offer.upstream_micros_per_hour
    tx.add(
        ProviderInstance(
            session_id=session.id,
            provider=offer.provider,
            external_id=launch.external_id,
            name=instance_name(session.id),
            gpu_type=offer.gpu_type,
            gpu_count=offer.gpu_count,
            upstream_micros_per_hour=offer.upstream_micros_per_hour,
            created_at=now,
        )
    )


async def mark_ready(db: Database, providers: dict[str, Provider], *, now: datetime) -> int:
    """Ask providers about provisioning sessions; the running ones become ready."""
    async with db.transaction() as tx:
        waiting = list(
            await tx.scalars(select(GpuSession).where(GpuSession.status == S.PROVISIONING.value))
        )
    became_ready = 0
    for session in waiting:
        outcome: tuple[SessionStatus, str | None] | None = None
        provider = providers.get(session.provider or "")
        if session.instance_id is None or provider is None:
            if now - session.created_at > LAUNCH_DEADLINE:
                outcome = (S.FAILED, "the launch did not finish in time")
        else:
            instance = await provider.status(session.instance_id)
            if instance is None or instance.state is InstanceState.FAILED:
                outcome = (S.FAILED, (instance and instance.message) or "the instance is gone")
            elif instance.state is InstanceState.RUNNING:
                outcome = (S.READY, None)
        if outcome is None:
            continue
        async with db.transaction() as tx:
            await lock_billing(tx)
            fresh = await tx.get(GpuSession, session.id, with_for_update=True)
            if fresh is None or fresh.status != S.PROVISIONING.value:
                continue
            target, reason = outcome
            await switch_status(
                tx,
                fresh,
                target,
                actor=ACTOR,
                now=now,
                reason=reason,
                end_reason=EndReason.PROVISIONING_FAILED if target is S.FAILED else None,
            )
            became_ready += target is S.READY
    return became_ready
