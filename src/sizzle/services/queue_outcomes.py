"""What the queue job (jobs/launch_queue.py) does with one queued launch, in the transaction
that holds its row: launch it (make its session through a direct launch's checks), refuse it
(no longer allowed), expire it, put it back in line (its GPU failed to start), and, when its
session turns ready, tell its user. Each ending tells the user why; nothing is charged.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import GpuSession, QueuedLaunch, User
from sizzle.domain.tiers import TIERS
from sizzle.errors import SizzleError
from sizzle.services import sessions
from sizzle.services.launch_queue import QueueStatus
from sizzle.services.notifications import Kind, notify

log = structlog.get_logger(__name__)

Q = QueueStatus
ACTOR = "system:launch-queue"
# A launch whose GPU failed to start this many times stops trying (each try is a session).
MAX_TRIES = 3


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
