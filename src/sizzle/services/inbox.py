"""The site's inbox: a user's notifications, newest first, and marking them read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import Notification
from sizzle.errors import NotFound

# The header's bell counts this far ("99+" beyond): the count stays one short, bounded query.
UNREAD_COUNTED_UP_TO = 100


async def list_notifications(
    tx: AsyncSession, user_id: str, *, limit: int, offset: int
) -> tuple[list[Notification], int]:
    """One page of the user's notifications, newest first, and how many there are."""
    rows = await tx.scalars(
        select(Notification)
        .where(Notification.user_id == user_id)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(limit)
        .offset(offset)
    )
    total = await tx.scalar(
        select(func.count()).select_from(Notification).where(Notification.user_id == user_id)
    )
    return list(rows), int(total or 0)


async def unread_count(tx: AsyncSession, user_id: str) -> int:
    """Unread notifications, counted up to UNREAD_COUNTED_UP_TO."""
    unread = (
        select(Notification.id)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .limit(UNREAD_COUNTED_UP_TO)
        .subquery()
    )
    return int(await tx.scalar(select(func.count()).select_from(unread)) or 0)


async def get_notification(tx: AsyncSession, user_id: str, notification_id: str) -> Notification:
    """One of the user's notifications; 404 for another user's, as for one that is not there."""
    row = await tx.get(Notification, notification_id)
    if row is None or row.user_id != user_id:
        raise NotFound("notification not found")
    return row


async def mark_read(
    tx: AsyncSession, user_id: str, *, now: datetime, ids: Sequence[str] | None = None
) -> int:
    """Mark the user's notifications read: all of them, or those `ids` name (404 if one is not
    theirs, and then none is marked). How many were unread."""
    mine = Notification.user_id == user_id
    if ids is not None:
        wanted = set(ids)
        found = set(
            await tx.scalars(select(Notification.id).where(mine, Notification.id.in_(wanted)))
        )
        if found != wanted:
            raise NotFound("notification not found", details={"missing": sorted(wanted - found)})
        mine = mine & Notification.id.in_(wanted)
    marked = await tx.execute(
        update(Notification).where(mine, Notification.read_at.is_(None)).values(read_at=now)
    )
    return max(int(getattr(marked, "rowcount", 0) or 0), 0)
