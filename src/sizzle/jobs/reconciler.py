"""The reconciler: what providers hold against what the database says.

Every `sizzle-` instance a provider lists must belong to a live session; one that does not is
destroyed. A session that should hold an instance but whose provider has not listed it on two
checks in a row has lost it: the session fails with `provider_lost`, billed only up to the
last time its instance was seen running (minutes charged after that are refunded).
A provider that cannot be listed is skipped for the round: silence is not evidence.

With several workers, one round runs at a time (the `reconcile` job lease; a worker that finds
it taken skips its turn). Two rounds at once would both count the same miss, failing a session
on one check instead of two, and would both destroy, and count, the same orphan. An orphan is
destroyed under its session's lease, after a fresh look at the session and at the instance:
the listing is older than any release or failover that finished since, and those destroyed
their own instance already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.clock import to_ms
from sizzle.db.database import Database
from sizzle.db.leases import job_lease, lease, session_lease
from sizzle.db.models import GpuSession, ProviderInstance
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.domain.money import MS_PER_MINUTE, minutes_started
from sizzle.providers.base import INSTANCE_PREFIX, Instance, InstanceState, Provider
from sizzle.services import ledger
from sizzle.services.lifecycle import switch_status
from sizzle.services.sessions import lock_session

log = structlog.get_logger(__name__)

S = SessionStatus
ACTOR = "system:reconciler"
MISSING_CHECKS_TO_FAIL = 2
HOLDS_AN_INSTANCE = (S.READY.value, S.ACTIVE.value, S.PAUSED.value)


@dataclass
class ReconcileReport:
    orphans_destroyed: list[str] = field(default_factory=list)
    sessions_lost: list[str] = field(default_factory=list)
    providers_skipped: list[str] = field(default_factory=list)


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
    return report


async def _reconcile(
    db: Database, providers: dict[str, Provider], report: ReconcileReport, *, now: datetime
) -> None:
    listed: dict[str, dict[str, Instance]] = {}
    for name, provider in providers.items():
        try:
            instances = await provider.list_instances()
        except Exception as exc:  # any failure: skip this provider for the round
            log.warning("reconcile.list_failed", provider=name, error=str(exc))
            report.providers_skipped.append(name)
            continue
        listed[name] = {i.name: i for i in instances if i.name.startswith(INSTANCE_PREFIX)}

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
                continue
            fresh.missing_checks += 1
            if fresh.missing_checks >= MISSING_CHECKS_TO_FAIL:
                await _fail_lost_session(tx, fresh, now=now)
                report.sessions_lost.append(fresh.id)


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


def _is_orphan(session: GpuSession | None, provider: str, instance: Instance) -> bool:
    """No live session owns it, or its session holds another instance."""
    if session is None:
        return True
    if session.status in (S.PENDING.value, S.PROVISIONING.value):
        return False  # a launch may be recording this very instance
    return session.provider != provider or session.instance_id != instance.external_id


async def _fail_lost_session(tx: AsyncSession, session: GpuSession, *, now: datetime) -> None:
    """Fail the session; bill it only to the last moment its instance was seen running."""
    if session.status == S.ACTIVE.value and session.active_since_ms is not None:
        seen = session.last_seen_running_ms or session.active_since_ms
        billable = session.active_ms_before + max(
            min(seen, to_ms(now)) - session.active_since_ms, 0
        )
        owed = minutes_started(billable)
        if session.charged_minutes > owed:
            await ledger.refund_session_minutes(
                tx, session.id, after_minute=owed, now=now, reason="instance lost at provider"
            )
            session.charged_minutes = owed
        session.active_ms_before = min(billable, owed * MS_PER_MINUTE)
        session.active_since_ms = None
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
