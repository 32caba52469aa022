"""The launch queue's job: launch waiting launches as GPUs are offered, oldest first.

Each pass puts back in line the launches whose GPU failed to start, ends the ones that waited
too long or whose account is no longer active, then asks the providers afresh for offers of
every tier waited for and launches up to one waiting launch per offer. Offers are asked for
outside any transaction; each launch is claimed (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the
write lock on SQLite) and made in one transaction with its queue entry's change, so several
workers running this job at once never make two sessions for one queued launch.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import or_, select

from sizzle.db.database import Database
from sizzle.db.models import GpuSession, QueuedLaunch, User
from sizzle.domain.lifecycle import SessionStatus
from sizzle.domain.tiers import TIERS
from sizzle.services import queue_outcomes
from sizzle.services.launch_queue import QueueStatus
from sizzle.services.orchestrator import Orchestrator

log = structlog.get_logger(__name__)

Q = QueueStatus
BATCH = 50  # entries ended per statement; launches per tier per pass at most


@dataclass
class QueuePass:
    """What one pass did."""

    launched: int = 0
    requeued: int = 0
    expired: int = 0
    refused: int = 0


async def run_queue_pass(
    db: Database,
    orchestrator: Orchestrator,
    *,
    now: datetime,
    lab_tiers: Collection[str],
) -> QueuePass:
    """One pass of the queue job (see the module's docstring)."""
    done = QueuePass()
    done.requeued, failed_for_good = await _put_back_failed(db, now=now)
    done.expired, done.refused = await _end_overdue(db, now=now)
    done.refused += failed_for_good
    async with db.read() as tx:
        tiers = list(
            await tx.scalars(
                select(QueuedLaunch.tier)
                .where(QueuedLaunch.status == Q.WAITING.value)
                .distinct()
                .order_by(QueuedLaunch.tier)
            )
        )
    for tier_name in tiers:
        tier = TIERS.get(tier_name)
        if tier is None:  # no longer configured: launch_entry ends its launches, saying so
            budget = BATCH
        else:
            budget = min(len(await orchestrator.offers_for(tier, fresh=True)), BATCH)
        while budget > 0:
            outcome = await _launch_oldest(db, tier_name, now=now, lab_tiers=lab_tiers)
            if outcome is None:
                break
            if outcome:
                done.launched += 1
                budget -= 1
            else:
                done.refused += 1
    if done != QueuePass():
        log.info("launch_queue.pass", **vars(done))
    return done


async def _launch_oldest(
    db: Database,
    tier: str,
    *,
    now: datetime,
    lab_tiers: Collection[str],
) -> bool | None:
    """Claim the oldest waiting launch of `tier` that no other worker holds and make its
    session: True if made, False if the launch was refused, None if none was left."""
    async with db.transaction() as tx:
        entry = await tx.scalar(
            select(QueuedLaunch)
            .where(
                QueuedLaunch.status == Q.WAITING.value,
                QueuedLaunch.tier == tier,
                QueuedLaunch.expires_at > now,
            )
            .order_by(QueuedLaunch.created_at, QueuedLaunch.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if entry is None:
            return None
        session = await queue_outcomes.launch_entry(tx, entry, now=now, lab_tiers=lab_tiers)
        return session is not None


async def _put_back_failed(db: Database, *, now: datetime) -> tuple[int, int]:
    """Launches whose session failed to start go back in line (or end after too many tries):
    (put back, ended)."""
    put_back = ended = 0
    async with db.transaction() as tx:
        rows = await tx.execute(
            select(QueuedLaunch, GpuSession)
            .join(GpuSession, GpuSession.id == QueuedLaunch.session_id)
            .where(
                QueuedLaunch.status == Q.LAUNCHED.value,
                GpuSession.status == SessionStatus.FAILED.value,
                GpuSession.ready_at.is_(None),
            )
            .limit(BATCH)
            .with_for_update(of=QueuedLaunch, skip_locked=True)
        )
        for entry, session in rows:
            await queue_outcomes.back_to_waiting(tx, entry, session, now=now)
            if entry.status == Q.WAITING.value:
                put_back += 1
            else:
                ended += 1
    return put_back, ended


async def _end_overdue(db: Database, *, now: datetime) -> tuple[int, int]:
    """Waiting launches past their time expire; those of an account no longer active end:
    (expired, ended)."""
    async with db.transaction() as tx:
        overdue = list(
            await tx.scalars(
                select(QueuedLaunch)
                .where(QueuedLaunch.status == Q.WAITING.value, QueuedLaunch.expires_at <= now)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for entry in overdue:
            await queue_outcomes.expire(tx, entry, now=now)
        barred = list(
            await tx.scalars(
                select(QueuedLaunch)
                .join(User, User.id == QueuedLaunch.user_id)
                .where(
                    QueuedLaunch.status == Q.WAITING.value,
                    or_(User.is_active.is_(False), User.deleted_at.is_not(None)),
                )
                .limit(BATCH)
                .with_for_update(of=QueuedLaunch, skip_locked=True)
            )
        )
        for entry in barred:
            await queue_outcomes.refuse(
                tx, entry, "the account is no longer active", now=now, tell=False
            )
    return len(overdue), len(barred)
