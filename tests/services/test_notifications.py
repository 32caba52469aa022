"""Notifications are made once per key, in the caller's transaction, and mailed unless the user
turned their kind off (never for a money-critical kind)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from sizzle.clock import FakeClock, to_ms
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, Notification, NotificationOptOut
from sizzle.services.notifications import Kind, notify, page_open
from tests.helpers import make_user


async def _tell(
    db: Database, user_id: str, kind: Kind, key: str, clock: FakeClock, **extra: Any
) -> bool:
    async with db.transaction() as tx:
        return await notify(
            tx, user_id=user_id, kind=kind, key=key, title="t", body="b", now=clock.now(), **extra
        )


async def _all(db: Database) -> list[Notification]:
    async with db.read() as tx:
        return list(await tx.scalars(select(Notification).order_by(Notification.key)))


async def test_the_same_key_makes_one_notification(db: Database, clock: FakeClock) -> None:
    user = await make_user(db, now=clock.now())
    assert await _tell(db, user.id, Kind.IDLE_WARNING, "idle_warning:s1:1", clock)
    assert not await _tell(db, user.id, Kind.IDLE_WARNING, "idle_warning:s1:1", clock)
    (made,) = await _all(db)
    assert (made.kind, made.mail_status, made.mail_due_at) == (
        "idle_warning",
        "pending",
        clock.now(),
    )


async def test_a_kind_turned_off_is_not_mailed_unless_money_critical(
    db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    async with db.transaction() as tx:
        tx.add(NotificationOptOut(user_id=user.id, kind=Kind.STILL_RUNNING.value))
        tx.add(NotificationOptOut(user_id=user.id, kind=Kind.BUDGET_REACHED.value))
    await _tell(db, user.id, Kind.STILL_RUNNING, "a", clock)
    await _tell(db, user.id, Kind.BUDGET_REACHED, "b", clock)
    await _tell(db, user.id, Kind.SESSION_READY, "c", clock, mail=False)
    assert [n.mail_status for n in await _all(db)] == ["off", "pending", "off"]


def test_a_page_seen_within_a_minute_is_open(clock: FakeClock) -> None:
    session = GpuSession(page_seen_ms=None)
    assert not page_open(session, clock.now())
    session.page_seen_ms = to_ms(clock.now() - timedelta(seconds=59))
    assert page_open(session, clock.now())
    session.page_seen_ms = to_ms(clock.now() - timedelta(seconds=60))
    assert not page_open(session, clock.now())
