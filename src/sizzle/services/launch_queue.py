"""Queued launches ("tell me when it's free"): a launch that waits for a GPU of its tier.

A queued launch holds nothing and costs nothing: it is the request, kept. Here: queueing one,
its place in line, the user's list, cancelling, and the operator's summary. The queue job
(jobs/launch_queue.py) launches the oldest waiting ones of a tier as offers appear, through the
same checks as a direct launch (plan, running sessions, money, an active account), in one
transaction with the queue entry's change, so that a launch is made exactly once however many
workers run the job; what it does with each entry is in services/queue_outcomes.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import structlog
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.database import Database
from sizzle.db.models import QueuedLaunch, User
from sizzle.errors import Conflict, NotFound
from sizzle.services import audit, sessions

log = structlog.get_logger(__name__)


class QueueStatus(StrEnum):
    WAITING = "waiting"
    LAUNCHED = "launched"  # its session is starting
    READY = "ready"  # its session became ready: done
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUSED = "refused"  # no longer allowed (plan, money, account): `reason` says why


Q = QueueStatus


@dataclass(frozen=True)
class QueuedView:
    """A queued launch, and (while it waits) its place in line for its tier: 1 is next."""

    entry: QueuedLaunch
    position: int | None


async def queue_launch(
    db: Database,
    *,
    user_id: str,
    tier_name: str,
    model: str | None,
    max_minutes: int | None,
    spend_cap_micros: int | None,
    idle_minutes: int | None,
    now: datetime,
    max_wait: timedelta,
    max_waiting: int,
    lab_tiers: Collection[str] = (),
) -> QueuedView:
    """Keep a launch to be made when a GPU of the tier is free, once everything but capacity
    allows it now (the same checks as a direct launch), and while the user has fewer than
    `max_waiting` waiting. It expires after `max_wait`."""
    tier = sessions.find_tier(tier_name)
    sessions.session_time_limit(tier, max_minutes, spend_cap_micros)
    async with db.transaction() as tx:
        # Locked, as for a direct launch: two requests on two replicas cannot both pass the cap.
        user = await tx.get(User, user_id, with_for_update={"key_share": True})
        if user is None:
            raise NotFound("user not found")
        await sessions.require_launch_allowed(tx, user, tier, lab_tiers=lab_tiers, now=now)
        waiting = await tx.scalar(
            select(func.count())
            .select_from(QueuedLaunch)
            .where(QueuedLaunch.user_id == user.id, QueuedLaunch.status == Q.WAITING.value)
        )
        if (waiting or 0) >= max_waiting:
            raise Conflict(
                f"you already have {waiting} launch{'' if waiting == 1 else 'es'} waiting for a "
                f"GPU, the most at once; cancel one, or wait for one to start",
                code="queue_full",
            )
        entry = QueuedLaunch(
            id=uuid.uuid4().hex,
            user_id=user.id,
            tier=tier.name,
            model=model,
            max_minutes=max_minutes,
            spend_cap_micros=spend_cap_micros,
            idle_minutes=idle_minutes,
            status=Q.WAITING.value,
            created_at=now,
            expires_at=now + max_wait,
            tries=0,
        )
        tx.add(entry)
        await tx.flush()
        audit.record(
            tx,
            "launch.queued",
            actor=f"user:{user.id}",
            now=now,
            user_id=user.id,
            target=f"queued_launch:{entry.id}",
            detail=f"{tier.name}" + (f", {model}" if model else ""),
        )
        log.info("launch.queued", queue_id=entry.id, user_id=user.id, tier=tier.name)
        return QueuedView(entry, await position(tx, entry))


async def position(tx: AsyncSession, entry: QueuedLaunch) -> int | None:
    """Its place in line among the launches waiting for its tier (1: next); None when it is
    not waiting."""
    if entry.status != Q.WAITING.value:
        return None
    ahead = await tx.scalar(
        select(func.count())
        .select_from(QueuedLaunch)
        .where(
            QueuedLaunch.status == Q.WAITING.value,
            QueuedLaunch.tier == entry.tier,
            or_(
                QueuedLaunch.created_at < entry.created_at,
                and_(QueuedLaunch.created_at == entry.created_at, QueuedLaunch.id < entry.id),
            ),
        )
    )
    return (ahead or 0) + 1


async def list_queued(
    tx: AsyncSession, *, user_id: str, limit: int, offset: int, status: QueueStatus | None = None
) -> tuple[list[QueuedView], int]:
    """The user's queued launches, newest first (only those in `status`, if given)."""
    where = [QueuedLaunch.user_id == user_id]
    if status is not None:
        where.append(QueuedLaunch.status == status.value)
    rows = list(
        await tx.scalars(
            select(QueuedLaunch)
            .where(*where)
            .order_by(QueuedLaunch.created_at.desc(), QueuedLaunch.id)
            .limit(limit)
            .offset(offset)
        )
    )
    total = await tx.scalar(select(func.count()).select_from(QueuedLaunch).where(*where))
    return [QueuedView(row, await position(tx, row)) for row in rows], total or 0


async def get_queued(tx: AsyncSession, queue_id: str, *, user_id: str) -> QueuedView:
    """One of the user's queued launches; another user's is as unknown as a missing one."""
    entry = await tx.get(QueuedLaunch, queue_id)
    if entry is None or entry.user_id != user_id:
        raise NotFound("queued launch not found")
    return QueuedView(entry, await position(tx, entry))


async def cancel(db: Database, *, queue_id: str, user_id: str, now: datetime) -> None:
    """Stop waiting. Cancelling one that has ended already changes nothing; one that has its
    GPU already is a 409 naming the session to stop instead."""
    async with db.transaction() as tx:
        entry = await tx.scalar(
            select(QueuedLaunch).where(QueuedLaunch.id == queue_id).with_for_update()
        )
        if entry is None or entry.user_id != user_id:
            raise NotFound("queued launch not found")
        if entry.status in (Q.LAUNCHED.value, Q.READY.value):
            raise Conflict(
                f"this launch has its GPU already: stop session {entry.session_id} instead",
                code="already_launched",
                details={"session_id": entry.session_id},
            )
        if entry.status != Q.WAITING.value:
            return
        entry.status, entry.ended_at, entry.reason = Q.CANCELLED.value, now, "You cancelled it."
        audit.record(
            tx,
            "launch.queue_cancelled",
            actor=f"user:{user_id}",
            now=now,
            user_id=user_id,
            target=f"queued_launch:{entry.id}",
        )


async def cancel_all_of_user(tx: AsyncSession, user_id: str, *, reason: str, now: datetime) -> None:
    """End every waiting launch of the user (the account is being deleted)."""
    found = await tx.scalars(
        select(QueuedLaunch)
        .where(QueuedLaunch.user_id == user_id, QueuedLaunch.status == Q.WAITING.value)
        .with_for_update()
    )
    for entry in found:
        entry.status, entry.ended_at, entry.reason = Q.CANCELLED.value, now, reason


@dataclass(frozen=True)
class WaitingSummary:
    """The operator's view of the queue: launches waiting per tier, and the longest wait."""

    by_tier: dict[str, int]
    oldest_wait_seconds: float

    @property
    def total(self) -> int:
        return sum(self.by_tier.values())


async def waiting_summary(tx: AsyncSession, *, now: datetime) -> WaitingSummary:
    """How many launches wait for each tier, and for how long the oldest of them has."""
    rows = await tx.execute(
        select(QueuedLaunch.tier, func.count(), func.min(QueuedLaunch.created_at))
        .where(QueuedLaunch.status == Q.WAITING.value)
        .group_by(QueuedLaunch.tier)
    )
    by_tier: dict[str, int] = {}
    oldest: datetime | None = None
    for tier, count, first in rows:
        by_tier[str(tier)] = int(count)
        if first is not None:
            # SQLite hands back min() of the column as text or naive: compare as UTC moments
            moment = _as_utc(first)
            oldest = moment if oldest is None or moment < oldest else oldest
    waited = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return WaitingSummary(by_tier=by_tier, oldest_wait_seconds=waited)


def _as_utc(value: object) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
