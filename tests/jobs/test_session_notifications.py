"""The jobs tell users about their sessions, once each, in the words Sizzle uses for money:
ready (mailed only when the page is closed), still running (after the first hour, then as often
as the user chose), running low, and stopped by Sizzle (out of money, at its limit, never
started)."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select, update

from sizzle.clock import FakeClock, to_ms
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, Notification, User
from sizzle.services.notification_events import still_running_mark
from sizzle.state import AppState
from tests.helpers import (
    create_session,
    grant,
    launch_active_session,
    launch_ready_session,
    log_in,
    make_user,
    run_for,
)


async def told(db: Database, kind: str) -> list[Notification]:
    async with db.read() as tx:
        return list(
            await tx.scalars(
                select(Notification)
                .where(Notification.kind == kind)
                .order_by(Notification.created_at, Notification.key)
            )
        )


async def signed_in(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, **money: object
) -> tuple[User, dict[str, str]]:
    user = await make_user(db, now=clock.now(), **money)  # type: ignore[arg-type]
    return user, await log_in(client, email=user.email)


async def test_a_ready_session_is_told_and_mailed_when_its_page_is_closed(
    client: httpx.AsyncClient, db: Database, state: AppState, clock: FakeClock
) -> None:
    _, auth = await signed_in(client, db, clock)
    session_id = await launch_ready_session(client, state, clock, auth=auth)
    await state.jobs.run_once()  # again: still one
    (ready,) = await told(db, "session_ready")
    assert (ready.session_id, ready.link) == (session_id, f"/sessions/{session_id}")
    assert ready.mail_status == "pending" and "Nothing is charged until you press Start" in (
        ready.body
    )


async def test_a_ready_session_whose_page_is_open_is_not_mailed(
    client: httpx.AsyncClient, db: Database, state: AppState, clock: FakeClock
) -> None:
    _, auth = await signed_in(client, db, clock)
    session_id = (await create_session(client, auth=auth))["id"]
    await state.jobs.run_once()
    async with db.transaction() as tx:  # the live page marks itself seen
        await tx.execute(
            update(GpuSession)
            .where(GpuSession.id == session_id)
            .values(page_seen_ms=to_ms(clock.now()))
        )
    clock.advance(state.settings.demo_provision_seconds)
    await state.jobs.run_once()
    (ready,) = await told(db, "session_ready")
    assert ready.mail_status == "off"  # the inbox has it; the page showed it


def test_still_running_is_due_after_the_first_hour_then_every_interval() -> None:
    hour = 3_600_000
    assert still_running_mark(hour - 1, 1) is None
    assert [still_running_mark(h * hour, 1) for h in (1, 2, 3)] == [1, 2, 3]
    assert [still_running_mark(h * hour + 5, 2) for h in (1, 2, 3, 4, 5)] == [1, 1, 3, 3, 5]
    assert [still_running_mark(h * hour, 4) for h in (1, 4, 5, 9)] == [1, 1, 5, 9]
    assert still_running_mark(10 * hour, 0) is None


async def test_still_running_is_told_once_per_reminder_hour(
    client: httpx.AsyncClient, db: Database, state: AppState, clock: FakeClock
) -> None:
    user, auth = await signed_in(client, db, clock, credit_usd="40", free_minutes=0)
    # no idle limit: no idle pass runs here, and metering charges no minute past such a limit
    session_id = await launch_active_session(client, state, clock, auth=auth, idle_minutes=None)
    await run_for(state, clock, seconds=3599, step=600)
    await state.jobs.notify()
    assert await told(db, "still_running") == []
    await run_for(state, clock, seconds=2, step=2)
    await state.jobs.notify()
    await state.jobs.notify()
    (first,) = await told(db, "still_running")
    assert first.key == f"still_running:{session_id}:1"
    assert "running for 1 hour. So far: $9.15 charged for 61 minutes." in first.body
    async with db.transaction() as tx:  # every 2 hours from now on: the next is at hour 3
        await tx.execute(update(User).where(User.id == user.id).values(still_running_every_hours=2))
    await run_for(state, clock, seconds=3600, step=600)
    await state.jobs.notify()
    assert len(await told(db, "still_running")) == 1
    await run_for(state, clock, seconds=3600, step=600)
    await state.jobs.notify()
    assert [n.key.rsplit(":", 1)[1] for n in await told(db, "still_running")] == ["1", "3"]


async def test_running_low_is_told_once_per_low_spell(
    client: httpx.AsyncClient, db: Database, state: AppState, clock: FakeClock
) -> None:
    user, auth = await signed_in(client, db, clock, free_minutes=3, credit_usd="1.50")
    await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=120, step=30)  # 3 free minutes + $1.50 = 13 minutes
    assert await told(db, "credit_low") == []
    await run_for(state, clock, seconds=120, step=30)
    await run_for(state, clock, seconds=60, step=30)
    (low,) = await told(db, "credit_low")
    assert low.title == "Running low: about 9 minutes left"
    assert "(0 free minutes, $1.35 credit)" in low.body and low.link == "/billing"
    await grant(db, email=user.email, usd="0.30", now=clock.now())  # still low: a new spell
    await run_for(state, clock, seconds=60, step=30)
    assert len(await told(db, "credit_low")) == 2
    await run_for(state, clock, seconds=60, step=30)
    assert len(await told(db, "credit_low")) == 2


async def test_a_session_stopped_for_want_of_money_says_what_it_used(
    client: httpx.AsyncClient, db: Database, state: AppState, clock: FakeClock
) -> None:
    _, auth = await signed_in(client, db, clock, free_minutes=2)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=240, step=30)
    (stopped,) = await told(db, "session_auto_stopped")
    assert stopped.session_id == session_id and stopped.mail_status == "pending"
    assert stopped.title == "Your session stopped: nothing left to pay for it"
    assert "your free minutes and credit ran out" in stopped.body
    assert "In all it used 2 minutes: 2 free minutes used · $0.00 charged." in stopped.body


async def test_a_session_at_its_time_limit_is_told_so(
    client: httpx.AsyncClient, db: Database, state: AppState, clock: FakeClock
) -> None:
    _, auth = await signed_in(client, db, clock, free_minutes=0, credit_usd="5")
    await launch_active_session(client, state, clock, auth=auth, max_minutes=2)
    await run_for(state, clock, seconds=150, step=30)
    (stopped,) = await told(db, "session_auto_stopped")
    assert stopped.title == "Your session reached its limit"
    assert "$0.30 charged for 2 minutes" in stopped.body


async def test_a_session_never_started_is_released_and_told_nothing_was_charged(
    client: httpx.AsyncClient, db: Database, state: AppState, clock: FakeClock
) -> None:
    _, auth = await signed_in(client, db, clock)
    await launch_ready_session(client, state, clock, auth=auth)
    clock.advance(timedelta(minutes=state.settings.abandon_minutes).total_seconds())
    await state.jobs.run_once()
    (released,) = await told(db, "session_auto_stopped")
    assert released.title == "Your GPU was released: it was not started"
    assert "Nothing was charged" in released.body and "$" not in released.body
