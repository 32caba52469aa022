"""Queued launches ("tell me when it's free"): a launch that waits for a GPU of its tier.

A queued launch holds nothing and costs nothing: it is the request, kept. The queue job
(jobs/launch_queue.py) launches the oldest waiting ones of a tier as offers appear, through the
same checks as a direct launch (plan, running sessions, money, an active account), in one
transaction with the queue entry's change, so that a launch is made exactly once however many
workers run the job. A launch no longer allowed ends, saying why; one that waited past its
limit expires; the user is told either way, and when its GPU is ready.
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
from sizzle.db.models import GpuSession, QueuedLaunch, User
from sizzle.domain.tiers import TIERS
from sizzle.errors import Conflict, NotFound, SizzleError
from sizzle.services import audit, sessions
from sizzle.services.notifications import Kind, notify

log = structlog.get_logger(__name__)

ACTOR = "system:launch-queue"
# A launch whose GPU failed to start this many times stops trying (each try is a session).
MAX_TRIES = 3


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


# --- what the queue job does with one entry ---------------------------------------------------


async def launch_entry(
    tx: AsyncSession,
    entry: QueuedLaunch,
    *,
    now: datetime,
    lab_tiers: Collection[str],
) -> GpuSession | None:
    """Make the waiting launch's session now, in `tx` (the entry row-locked by the caller):
    the session, or None when the launch is no longer allowed, which ends it saying why.
    The session gets the idle limit asked for when it was queued."""
    tier = TIERS.get(entry.tier)
    if tier is None:
        await refuse(tx, entry, f"the {entry.tier} tier is no longer offered", now=now)
        return None
    # Locked as a direct launch locks it: its running sessions are counted once.
    user = await tx.get(User, entry.user_id, with_for_update={"key_share": True})
    try:
        if user is None or user.deleted_at is not None or not user.is_active:
            await refuse(tx, entry, "the account is no longer active", now=now, tell=False)
            return None
        max_minutes = sessions.session_time_limit(tier, entry.max_minutes, entry.spend_cap_micros)
        covered = await sessions.require_launch_allowed(
            tx, user, tier, lab_tiers=lab_tiers, now=now
        )
    except SizzleError as exc:
        await refuse(tx, entry, exc.message, now=now)
        return None
    session = sessions.add_session(
        tx,
        user_id=user.id,
        tier=tier,
        model=entry.model,
        max_minutes=max_minutes,
        idle_minutes=entry.idle_minutes,
        lab_covered=covered,
        now=now,
        actor=ACTOR,
    )
    await tx.flush()
    entry.status, entry.session_id, entry.launched_at = Q.LAUNCHED.value, session.id, now
    entry.tries += 1
    log.info("launch.queue_launched", queue_id=entry.id, session_id=session.id, user_id=user.id)
    return session


async def refuse(
    tx: AsyncSession, entry: QueuedLaunch, reason: str, *, now: datetime, tell: bool = True
) -> None:
    """End a launch that may not be made any more, and (unless `tell` is False) tell its user
    why."""
    entry.status, entry.ended_at = Q.REFUSED.value, now
    entry.reason = _sentence(reason)
    log.info("launch.queue_refused", queue_id=entry.id, reason=entry.reason)
    if tell:
        await _tell_ended(
            tx,
            entry,
            f"Your {entry.tier} GPU was not launched: {entry.reason[:1].lower()}{entry.reason[1:]}",
            now=now,
        )


async def expire(tx: AsyncSession, entry: QueuedLaunch, *, now: datetime) -> None:
    """End a launch that waited its whole time, and tell its user."""
    hours = (entry.expires_at - entry.created_at).total_seconds() / 3600
    entry.status, entry.ended_at = Q.EXPIRED.value, now
    entry.reason = f"No {entry.tier} GPU became free within {_hours(hours)}."
    log.info("launch.queue_expired", queue_id=entry.id)
    await _tell_ended(tx, entry, entry.reason, now=now)


async def back_to_waiting(
    tx: AsyncSession, entry: QueuedLaunch, session: GpuSession, *, now: datetime
) -> None:
    """The GPU found for the launch could not be started (nothing was charged): wait again in
    the same place in line, or end after MAX_TRIES such GPUs."""
    why = session.last_error or "it did not start"
    if entry.tries >= MAX_TRIES:
        await refuse(
            tx,
            entry,
            f"a GPU was found {entry.tries} times, but none of them could be started (last: {why})",
            now=now,
        )
        return
    entry.status = Q.WAITING.value
    entry.reason = _sentence(f"The GPU found could not be started ({why}); waiting for another")
    log.info("launch.queue_requeued", queue_id=entry.id, session_id=session.id)


async def tell_ready(
    tx: AsyncSession, session: GpuSession, *, now: datetime, hold: timedelta
) -> bool:
    """If `session` was launched from the queue, mark that launch done and tell its user the
    GPU is ready, by mail too (they were not watching), and until when it is kept for them
    (`hold`, the reaper's word for sessions from the queue): True. Called in the transaction
    that makes the session ready."""
    entry = await tx.scalar(
        select(QueuedLaunch)
        .where(QueuedLaunch.session_id == session.id, QueuedLaunch.status == Q.LAUNCHED.value)
        .with_for_update()
    )
    if entry is None:
        return False
    entry.status, entry.ended_at = Q.READY.value, now
    waited = _hours((now - entry.created_at).total_seconds() / 3600)
    await notify(
        tx,
        user_id=entry.user_id,
        kind=Kind.QUEUED_LAUNCH_READY,
        key=f"queued_ready:{entry.id}",
        title=f"Your {entry.tier} GPU is ready",
        body=f"The {entry.tier} GPU you waited for is ready, after {waited}. Nothing is charged "
        f"until you start it. Sizzle holds it for you for {_hours(hold.total_seconds() / 3600)}, "
        f"until {(now + hold).astimezone(UTC):%H:%M} UTC: open the session and press Start. If "
        "it is not started by then, it is given back, still at no charge, and you can ask again.",
        now=now,
        link=f"/sessions/{session.id}",
        session_id=session.id,
        mail=True,
    )
    return True


async def _tell_ended(tx: AsyncSession, entry: QueuedLaunch, body: str, *, now: datetime) -> None:
    await notify(
        tx,
        user_id=entry.user_id,
        kind=Kind.QUEUED_LAUNCH_ENDED,
        key=f"queued_ended:{entry.id}",
        title=f"Your wait for a {entry.tier} GPU ended",
        body=f"{body} Nothing was charged. You can ask again from the launch page.",
        now=now,
        link="/sessions",
    )


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _hours(hours: float) -> str:
    """12 minutes, 1 hour, 2 hours 5 minutes."""
    minutes = round(hours * 60)
    whole, rest = divmod(minutes, 60)
    parts = []
    if whole:
        parts.append(f"{whole} hour{'' if whole == 1 else 's'}")
    if rest or not whole:
        parts.append(f"{rest} minute{'' if rest == 1 else 's'}")
    return " ".join(parts)
