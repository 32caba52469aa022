"""Provisioning: launch pending sessions through the orchestrator, and mark them ready.

A session is claimed (pending -> provisioning) in a short transaction with SKIP LOCKED, so
several workers never launch it twice; the provider is called outside any transaction.

Every provider-facing step on a provisioning session (its launch, each readiness check, a
failover to the next offer) runs under the session's lease (`sizzle.db.leases`), taken before
the claim commits. So with several workers exactly one of them talks to the provider about a
session at a time, and a session that is provisioning with no instance and no lease holder
really has lost its launcher: a launch in flight in another worker (a failover after a 15-minute
provision timeout, say) is never mistaken for a dead one and failed under it.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.clock import to_ms
from sizzle.db.database import Database
from sizzle.db.leases import lease_holder, session_lease
from sizzle.db.models import GpuSession, LaunchAttempt, ProviderInstance
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.domain.tiers import TIERS
from sizzle.errors import SizzleError
from sizzle.providers.base import Boot, InstanceState, SupportsSsh, instance_name
from sizzle.services import notification_events, queue_outcomes, ssh_keys
from sizzle.services.lifecycle import switch_status
from sizzle.services.metering import lock_billing
from sizzle.services.orchestrator import Attempt, Launch, Orchestrator
from sizzle.services.readiness import ReadinessProbe
from sizzle.services.sessions import record_progress
from sizzle.workload import keys

log = structlog.get_logger(__name__)

S = SessionStatus
ACTOR = "system:provisioner"
CLAIM_BATCH = 20
# A claimed session with no instance after this long lost its launcher (a crash mid-launch).
LAUNCH_DEADLINE = timedelta(minutes=10)


async def launch_pending(
    db: Database, orchestrator: Orchestrator, *, now: datetime, secret: str
) -> int:
    """Claim pending sessions and launch each on the best offer; returns how many were claimed.

    `secret`: the app's secret key, which seals each session's SSH key pair (see `_boot`)."""
    async with lease_holder(db) as leases:
        async with db.transaction() as tx:
            await lock_billing(tx)
            candidates = list(
                await tx.scalars(
                    select(GpuSession)
                    .where(GpuSession.status == S.PENDING.value)
                    .order_by(GpuSession.created_at)
                    .limit(CLAIM_BATCH)
                    .with_for_update(skip_locked=True)
                )
            )
            claimed = []
            for session in candidates:
                # Leased before the claim commits: never provisioning, instance-less and unleased
                # while its launch is alive (see mark_ready).
                if await leases.try_take(session_lease(session.id)):
                    await switch_status(tx, session, S.PROVISIONING, actor=ACTOR, now=now)
                    claimed.append(session)
        for session in claimed:
            try:
                await _launch(db, orchestrator, session, now=now, secret=secret)
            finally:
                await leases.give_back(session_lease(session.id))
    return len(claimed)


async def _launch(
    db: Database,
    orchestrator: Orchestrator,
    session: GpuSession,
    *,
    now: datetime,
    secret: str,
    skip: frozenset[str] = frozenset(),
) -> None:
    try:
        launch = await orchestrator.launch(
            TIERS[session.tier],
            session_id=session.id,
            model=session.model,
            skip=skip,
            boot=await _boot(db, session, now=now, secret=secret),
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
            await _record_launch(tx, fresh, launch, now=now)
    if discarded:
        await orchestrator.providers[offer.provider].terminate(launch.external_id)
        log.info("launch.discarded", session_id=session.id, provider=offer.provider)
        return
    log.info(
        "session.launched", session_id=session.id, provider=offer.provider, offer=offer.offer_id
    )


async def _boot(db: Database, session: GpuSession, *, now: datetime, secret: str) -> Boot:
    """What a cloud instance of the session boots with: the session's SSH key pair, made (and
    stored sealed) at its first launch and kept across failovers until the session ends, and
    the owner's own SSH keys as they are at this launch (added next to ours, never instead)."""
    async with db.transaction() as tx:
        key = await keys.session_key(tx, session.id, secret=secret, now=now)
        user_keys = await ssh_keys.keys_for_boot(tx, session)
    return Boot(ssh_public_key=key.public_key, user_ssh_keys=user_keys, model=session.model)


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


async def _record_launch(
    tx: AsyncSession, session: GpuSession, launch: Launch, *, now: datetime
) -> None:
    """The GPU the session got, its upstream price, and the instance that now exists (whose
    host key is pinned at its first connect, not the previous instance's)."""
    await keys.unpin_host_key(tx, session.id)
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


async def mark_ready(
    db: Database,
    orchestrator: Orchestrator,
    *,
    now: datetime,
    provision_timeout: timedelta,
    secret: str,
    readiness: ReadinessProbe,
    queue_hold: timedelta,
) -> int:
    """Ask providers about provisioning sessions: the running ones become ready; an instance
    that failed, vanished or is not ready in time is destroyed and the next offer tried.

    On an instance reached over SSH, "running" is not enough: the session turns ready once its
    model answers through the private path (`readiness`); until then each round records the
    boot's phase as the session's progress, and a failed boot is a failed instance.

    Each session is checked under its lease; one leased elsewhere (launching, or being checked
    by another worker) is skipped this time, so no two workers ask, terminate or fail over the
    same session at once."""
    async with db.transaction() as tx:
        waiting = list(
            await tx.scalars(select(GpuSession.id).where(GpuSession.status == S.PROVISIONING.value))
        )
    if not waiting:
        return 0
    became_ready = 0
    async with lease_holder(db) as leases:
        for session_id in waiting:
            if not await leases.try_take(session_lease(session_id)):
                continue
            try:
                became_ready += await _check_launch(
                    db,
                    orchestrator,
                    session_id,
                    now=now,
                    provision_timeout=provision_timeout,
                    secret=secret,
                    readiness=readiness,
                    queue_hold=queue_hold,
                )
            finally:
                await leases.give_back(session_lease(session_id))
    return became_ready


async def _check_launch(
    db: Database,
    orchestrator: Orchestrator,
    session_id: str,
    *,
    now: datetime,
    provision_timeout: timedelta,
    secret: str,
    readiness: ReadinessProbe,
    queue_hold: timedelta,
) -> int:
    """One provisioning session, read afresh under its lease (the list above may be stale)."""
    async with db.transaction() as tx:
        session = await tx.get(GpuSession, session_id)
    if session is None or session.status != S.PROVISIONING.value:
        return 0
    provider = orchestrator.providers.get(session.provider or "")
    if session.instance_id is None or provider is None:
        # Nobody holds its lease, so its launcher died between claim and record.
        if now - session.created_at > LAUNCH_DEADLINE:
            await _fail(db, session.id, "the launch did not finish in time", now=now)
        return 0
    instance = await provider.status(session.instance_id)
    problem: str | None = None
    if instance is not None and instance.state is InstanceState.RUNNING:
        if not isinstance(provider, SupportsSsh):
            return await _to_ready(db, session, now=now, queue_hold=queue_hold)
        boot = await readiness.check(
            provider,
            session_id=session.id,
            instance_id=session.instance_id,
            model=session.model,
            # a VM booted over SSH (Lambda) is given what a container is given at its launch
            boot=functools.partial(_boot, db, session, now=now, secret=secret),
        )
        if boot.ready:
            return await _to_ready(db, session, now=now, queue_hold=queue_hold)
        if boot.phase is not None:
            await record_progress(db, session.id, boot.phase, boot.percent)
        problem = boot.failure
    elif instance is None or instance.state is InstanceState.FAILED:
        problem = (instance and instance.message) or "the instance disappeared while starting"
    if problem is None:
        if not await _launched_before(db, session, now - provision_timeout):
            return 0
        problem = f"not ready within {provision_timeout.total_seconds():g} s"
    await provider.terminate(session.instance_id)  # destroyed before anything else is tried
    await readiness.tunnels.close(session.id)  # the next instance gets a connection of its own
    if await _forget_instance(db, session, problem, now=now):
        skip = await _tried(db, session.id)
        await _launch(db, orchestrator, session, now=now, secret=secret, skip=skip)
    return 0


async def _to_ready(
    db: Database, session: GpuSession, *, now: datetime, queue_hold: timedelta
) -> int:
    async with db.transaction() as tx:
        await lock_billing(tx)
        fresh = await tx.get(GpuSession, session.id, with_for_update=True)
        if fresh is None or fresh.status != S.PROVISIONING.value:
            return 0
        fresh.last_seen_running_ms = to_ms(now)
        await switch_status(tx, fresh, S.READY, actor=ACTOR, now=now)
        # A launch that waited in the queue tells its user in its own words (mailed: they
        # were not watching), and how long the GPU is kept for them; any other session gets
        # the general "ready".
        if not await queue_outcomes.tell_ready(tx, fresh, now=now, hold=queue_hold):
            await notification_events.session_ready(tx, fresh, now=now)
        return 1


async def _fail(db: Database, session_id: str, reason: str, *, now: datetime) -> None:
    async with db.transaction() as tx:
        await lock_billing(tx)
        fresh = await tx.get(GpuSession, session_id, with_for_update=True)
        if fresh is not None and fresh.status == S.PROVISIONING.value:
            fresh.last_error = reason
            await switch_status(
                tx,
                fresh,
                S.FAILED,
                actor=ACTOR,
                now=now,
                reason=reason,
                end_reason=EndReason.PROVISIONING_FAILED,
            )


async def _launched_before(db: Database, session: GpuSession, moment: datetime) -> bool:
    async with db.transaction() as tx:
        launched = await tx.scalar(
            select(ProviderInstance.created_at).where(
                ProviderInstance.session_id == session.id,
                ProviderInstance.external_id == session.instance_id,
            )
        )
    return launched is not None and launched < moment


async def _forget_instance(
    db: Database, session: GpuSession, problem: str, *, now: datetime
) -> bool:
    """Record why the launched offer failed and detach its (destroyed) instance."""
    async with db.transaction() as tx:
        await lock_billing(tx)
        fresh = await tx.get(GpuSession, session.id, with_for_update=True)
        if fresh is None or fresh.status != S.PROVISIONING.value:
            return False
        if fresh.instance_id != session.instance_id:
            return False  # someone else moved on already
        attempt = await tx.scalar(
            select(LaunchAttempt)
            .where(LaunchAttempt.session_id == fresh.id, LaunchAttempt.outcome == "launched")
            .order_by(LaunchAttempt.id.desc())
        )
        if attempt is not None:
            attempt.outcome, attempt.error = "failed_to_start", problem
        instance = await tx.scalar(
            select(ProviderInstance).where(
                ProviderInstance.session_id == fresh.id,
                ProviderInstance.external_id == fresh.instance_id,
            )
        )
        if instance is not None:
            instance.terminated_at = now
        fresh.provider = fresh.instance_id = fresh.gpu_type = None
        fresh.gpu_count = fresh.upstream_micros_per_hour = None
        fresh.last_error = problem
    log.info("launch.failed_to_start", session_id=session.id, error=problem)
    return True


async def _tried(db: Database, session_id: str) -> frozenset[str]:
    async with db.transaction() as tx:
        rows = await tx.execute(
            select(LaunchAttempt.provider, LaunchAttempt.offer_id).where(
                LaunchAttempt.session_id == session_id
            )
        )
        return frozenset(f"{provider}:{offer_id}" for provider, offer_id in rows)
