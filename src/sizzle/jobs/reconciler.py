"""The reconciler: what providers hold against what the database says.

Every `sizzle-` instance a provider lists must belong to a live session; one that does not is
destroyed. A session that should hold an instance but whose provider has not listed it on two
checks in a row has lost it: the session fails with `provider_lost`, billed only up to the
last time its instance was seen running (minutes charged after that are refunded).
A provider that cannot be listed is skipped for the round: silence is not evidence. Its streak
of failed rounds and its last good listing are recorded (services/provider_listings.py) and
reported, so a reconciler blind at a provider shows in metrics, alerts and on the overview.

A session and its instance that disagree are made to agree, and billed to the truth: a paused
session whose GPU runs gets it stopped (paused time is not billed); an active session whose
GPU the provider has stopped is paused, billed only up to the last time its GPU was seen
running (minutes paid beyond that count toward the next ones, or are refunded at its end).
Each repair waits out a short grace after the session's own pause or resume (a provider may
report the change late), and is made under the session's lease after a fresh look at both.

With several workers, one round runs at a time (the `reconcile` job lease; a worker that finds
it taken skips its turn). Two rounds at once would both count the same miss, failing a session
on one check instead of two, and would both destroy, and count, the same orphan. An orphan is
destroyed under its session's lease, after a fresh look at the session and at the instance:
the listing is older than any release or failover that finished since, and those destroyed
their own instance already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.clock import from_ms, to_ms
from sizzle.db.database import Database
from sizzle.db.leases import job_lease, lease, session_lease
from sizzle.db.models import GpuSession, ProviderInstance, ProviderListing
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.domain.money import MS_PER_MINUTE
from sizzle.errors import SizzleError
from sizzle.providers.base import (
    INSTANCE_PREFIX,
    Instance,
    InstanceState,
    Provider,
    SupportsPause,
)
from sizzle.services.lifecycle import switch_status
from sizzle.services.metering import charge_due_minutes
from sizzle.services.provider_listings import listings_of, record_round
from sizzle.services.sessions import lock_session

log = structlog.get_logger(__name__)

S = SessionStatus
ACTOR = "system:reconciler"
MISSING_CHECKS_TO_FAIL = 2
HOLDS_AN_INSTANCE = (S.READY.value, S.ACTIVE.value, S.PAUSED.value)
# How long after a pause or resume a provider may still report the GPU as it was before.
STATE_GRACE = timedelta(minutes=2)


@dataclass
class ReconcileReport:
    orphans_destroyed: list[str] = field(default_factory=list)
    sessions_lost: list[str] = field(default_factory=list)
    providers_skipped: list[str] = field(default_factory=list)
    sessions_paused: list[str] = field(default_factory=list)  # their GPU was found stopped
    instances_stopped: list[str] = field(default_factory=list)  # of paused sessions
    # Each provider's listing after this round (failed rounds in a row, last good listing).
    listings: dict[str, ProviderListing] = field(default_factory=dict)


async def reconcile(
    db: Database, providers: dict[str, Provider], *, now: datetime
) -> ReconcileReport:
    """One reconciler round, unless another process is running one right now."""
    report = ReconcileReport()
    async with lease(db, job_lease("reconcile")) as leased:
        if leased:
            await _reconcile(db, providers, report, now=now)
        else:
            log.debug("reconcile.skipped", reason="another process is reconciling")
            # What the round being run elsewhere records: this process's gauges tell the same.
            async with db.read() as tx:
                report.listings = await listings_of(tx, list(providers))
    return report


async def _reconcile(
    db: Database, providers: dict[str, Provider], report: ReconcileReport, *, now: datetime
) -> None:
    listed: dict[str, dict[str, Instance]] = {}
    outcomes: dict[str, str | None] = {}
    for name, provider in providers.items():
        try:
            instances = await provider.list_instances()
        except Exception as exc:  # any failure: skip this provider for the round
            log.warning("reconcile.list_failed", provider=name, error=str(exc))
            report.providers_skipped.append(name)
            outcomes[name] = _listing_error(exc)
            continue
        listed[name] = {i.name: i for i in instances if i.name.startswith(INSTANCE_PREFIX)}
        outcomes[name] = None
    async with db.transaction() as tx:
        rows = await record_round(tx, outcomes, now=now)
    report.listings = {row.provider: row for row in rows}
    for row in rows:
        if row.failed_rounds:
            log.warning(
                "reconcile.provider_blind",
                provider=row.provider,
                failed_rounds=row.failed_rounds,
                since=row.failing_since,
            )

    async with db.transaction() as tx:
        live = {
            s.id: s
            for s in await tx.scalars(
                select(GpuSession).where(
                    GpuSession.status.not_in([S.TERMINATED.value, S.FAILED.value])
                )
            )
        }
    for provider_name, by_name in listed.items():
        for name, instance in by_name.items():
            session_id = name.removeprefix(INSTANCE_PREFIX)
            if not _is_orphan(live.get(session_id), provider_name, instance):
                continue
            if await _destroy_orphan(db, providers, provider_name, session_id, instance):
                report.orphans_destroyed.append(f"{provider_name}:{instance.external_id}")
                log.warning("reconcile.orphan_destroyed", provider=provider_name, name=name)

    drifted: list[str] = []
    for session in live.values():
        if session.status not in HOLDS_AN_INSTANCE or session.provider not in listed:
            continue
        held = listed[session.provider].get(INSTANCE_PREFIX + session.id)
        async with db.transaction() as tx:
            fresh = await lock_session(tx, session.id, user_id=None)
            if fresh.status not in HOLDS_AN_INSTANCE:
                continue
            if held is not None:
                fresh.missing_checks = 0
                if held.state is InstanceState.RUNNING:
                    fresh.last_seen_running_ms = to_ms(now)
                if _disagrees(fresh, held, providers[session.provider], now=now):
                    drifted.append(fresh.id)
                continue
            fresh.missing_checks += 1
            if fresh.missing_checks >= MISSING_CHECKS_TO_FAIL:
                await _fail_lost_session(tx, fresh, now=now)
                report.sessions_lost.append(fresh.id)
    for session_id in drifted:
        await _repair_disagreement(db, providers, session_id, report, now=now)


async def _destroy_orphan(
    db: Database,
    providers: dict[str, Provider],
    provider_name: str,
    session_id: str,
    instance: Instance,
) -> bool:
    """Destroy a listed orphan if it still is one; whether it was destroyed here."""
    async with lease(db, session_lease(session_id)) as leased:
        if not leased:
            return False  # a launch, check or release is at work on it: look again next round
        async with db.transaction() as tx:
            session = await tx.get(GpuSession, session_id)
        if session is not None and session.status in (S.TERMINATED.value, S.FAILED.value):
            session = None
        if not _is_orphan(session, provider_name, instance):
            return False
        provider = providers[provider_name]
        if await provider.status(instance.external_id) is None:
            return False  # already destroyed since the listing (by a release or a failover)
        await provider.terminate(instance.external_id)
        return True


def _listing_error(exc: Exception) -> str:
    """What the overview may show of a failed listing: a Sizzle error's message, else only the
    exception's type (a raw transport error can quote a URL that carries a key)."""
    if isinstance(exc, SizzleError):
        return exc.message
    return f"{type(exc).__name__} (details in the reconcile.list_failed log line)"


def _is_orphan(session: GpuSession | None, provider: str, instance: Instance) -> bool:
    """No live session owns it, or its session holds another instance."""
    if session is None:
        return True
    if session.status in (S.PENDING.value, S.PROVISIONING.value):
        return False  # a launch may be recording this very instance
    return session.provider != provider or session.instance_id != instance.external_id


def _disagrees(
    session: GpuSession, instance: Instance, provider: Provider, *, now: datetime
) -> bool:
    """Active with a stopped GPU, or paused with a running one, past the grace of the change."""
    if session.status == S.ACTIVE.value and instance.state is InstanceState.STOPPED:
        since = session.active_since_ms
        return since is not None and to_ms(now) - since >= STATE_GRACE / timedelta(milliseconds=1)
    if session.status == S.PAUSED.value and instance.state is InstanceState.RUNNING:
        # A provider that cannot pause keeps the GPU while the session is paused, by design.
        paused = session.paused_at
        return (
            isinstance(provider, SupportsPause)
            and paused is not None
            and now - paused >= STATE_GRACE
        )
    return False


async def _repair_disagreement(
    db: Database,
    providers: dict[str, Provider],
    session_id: str,
    report: ReconcileReport,
    *,
    now: datetime,
) -> None:
    """Make the session and its instance agree, if a fresh look at both still disagrees."""
    async with lease(db, session_lease(session_id)) as leased:
        if not leased:
            return  # a user's action or a job is at work on it: look again next round
        async with db.read() as tx:
            session = await tx.get(GpuSession, session_id)
        if session is None or session.provider not in providers or not session.instance_id:
            return
        provider = providers[session.provider]
        try:
            instance = await provider.status(session.instance_id)
            if instance is None or not _disagrees(session, instance, provider, now=now):
                return
            if session.status == S.PAUSED.value and isinstance(provider, SupportsPause):
                await provider.stop(session.instance_id)
                report.instances_stopped.append(session_id)
                log.warning("reconcile.paused_instance_stopped", session_id=session_id)
                return
        except Exception as exc:  # any failure: this session waits for the next round
            log.warning("reconcile.repair_failed", session_id=session_id, error=str(exc))
            return
        async with db.transaction() as tx:
            fresh = await lock_session(tx, session_id, user_id=None)
            if fresh.status != S.ACTIVE.value:
                return
            await _bill_to_last_sighting(tx, fresh, now=now)
            await switch_status(
                tx,
                fresh,
                S.PAUSED,
                actor=ACTOR,
                now=now,
                reason="its GPU was found stopped at the provider",
                already_metered=True,
            )
        report.sessions_paused.append(session_id)
        log.warning("reconcile.stopped_instance_paused", session_id=session_id)


async def _bill_to_last_sighting(tx: AsyncSession, session: GpuSession, *, now: datetime) -> None:
    """End the active span where its GPU was last seen running, charged up to there."""
    if session.active_since_ms is None:
        return
    seen = session.last_seen_running_ms or session.active_since_ms
    until = max(min(seen, to_ms(now)), session.active_since_ms)
    await charge_due_minutes(tx, now=from_ms(until), session_ids=[session.id])
    await tx.refresh(session)
    billable = session.active_ms_before + until - session.active_since_ms
    session.active_ms_before = min(billable, session.charged_minutes * MS_PER_MINUTE)
    session.active_since_ms = None


async def _fail_lost_session(tx: AsyncSession, session: GpuSession, *, now: datetime) -> None:
    """Fail the session; bill it only to the last moment its instance was seen running."""
    if session.status == S.ACTIVE.value:
        await _bill_to_last_sighting(tx, session, now=now)  # the minutes after: refunded
    instance = await tx.scalar(
        select(ProviderInstance).where(
            ProviderInstance.session_id == session.id, ProviderInstance.terminated_at.is_(None)
        )
    )
    if instance is not None:
        instance.terminated_at = now
    session.last_error = "the provider no longer has this session's instance"
    await switch_status(
        tx,
        session,
        S.FAILED,
        actor=ACTOR,
        now=now,
        end_reason=EndReason.PROVIDER_LOST,
        reason="instance gone at the provider",
        already_metered=True,
    )
