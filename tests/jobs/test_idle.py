"""Idle auto-stop on the demo provider (which can pause), driven through the API and
`state.jobs.housekeep()` with a fake clock: warned two minutes before the limit, paused at
exactly the limit and billed to it, kept by "Keep it running", never with "never", once
however many processes check."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import LedgerEntry, Notification, SessionEvent
from sizzle.state import AppState
from tests.helpers import (
    act,
    assert_error,
    create_session,
    get_session,
    launch_active_session,
    me,
    run_for,
    signed_in_user,
)

MINUTE = 60


async def _after(state: AppState, clock: FakeClock, *, seconds: float) -> None:
    clock.advance(seconds)
    await state.jobs.housekeep()


async def _notes(db: Database, session_id: str) -> list[Notification]:
    """The session's idle notifications (it has others: ready, still running...)."""
    async with db.read() as tx:
        return list(
            await tx.scalars(
                select(Notification)
                .where(
                    Notification.session_id == session_id,
                    Notification.kind.in_(("idle_warning", "idle_stopped")),
                )
                .order_by(Notification.created_at, Notification.kind)
            )
        )


async def _paying_user(client: httpx.AsyncClient, db: Database, clock: FakeClock) -> dict:
    return await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="10")


async def test_a_session_nobody_uses_is_warned_then_paused_at_exactly_its_idle_limit(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    assert (await get_session(client, auth=auth, session_id=session_id))["idle_minutes"] == 15
    await _after(state, clock, seconds=13 * MINUTE - 1)
    assert await _notes(db, session_id) == []
    await _after(state, clock, seconds=1)
    (warning,) = await _notes(db, session_id)
    assert (warning.kind, warning.mail_status) == ("idle_warning", "pending")  # no page open
    assert "in 2 minutes" in warning.title
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["idle_seconds_left"]) == ("active", 120)

    await _after(state, clock, seconds=2 * MINUTE - 1)
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "active"
    await _after(state, clock, seconds=1)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["active_seconds"], body["charged_minutes"]) == ("paused", 900, 15)
    assert (body["idle_stop_at"], body["charged_usd"]) == (None, "2.25")
    assert (await me(client, auth=auth))["balance_usd"] == "7.75"
    assert [n.kind for n in await _notes(db, session_id)] == ["idle_warning", "idle_stopped"]
    async with db.read() as tx:
        event = await tx.scalar(
            select(SessionEvent).where(
                SessionEvent.session_id == session_id, SessionEvent.to_status == "paused"
            )
        )
    assert event is not None and (event.actor, event.reason) == ("system:idle", "idle")


async def test_a_late_pass_pauses_at_the_limit_itself_and_bills_no_further(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await _after(state, clock, seconds=3 * 3600)  # no pass for hours: it still ends at 15 min
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["active_seconds"], body["charged_minutes"]) == ("paused", 900, 15)
    assert (await me(client, auth=auth))["balance_usd"] == "7.75"


async def test_keep_it_running_moves_the_stop_a_whole_limit_away(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await _after(state, clock, seconds=14 * MINUTE)
    kept = await act(client, auth=auth, session_id=session_id, action="keep-alive")
    assert kept.status_code == 200, kept.text
    assert (kept.json()["status"], kept.json()["idle_seconds_left"]) == ("active", 900)
    await _after(state, clock, seconds=15 * MINUTE - 1)
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "active"
    await _after(state, clock, seconds=1)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["active_seconds"]) == ("paused", 29 * MINUTE)
    warned = [n for n in await _notes(db, session_id) if n.kind == "idle_warning"]
    assert len(warned) == 2  # one for each stretch of idleness


async def test_keep_alive_is_for_my_running_sessions_only(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    stranger = await _paying_user(client, db, clock)
    refused = await act(client, auth=stranger, session_id=session_id, action="keep-alive")
    assert_error(refused, 404, "not_found")
    await act(client, auth=auth, session_id=session_id, action="pause")
    paused = await act(client, auth=auth, session_id=session_id, action="keep-alive")
    assert "paused" in assert_error(paused, 409, "session_not_active")["message"]


async def test_never_means_never(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="100")
    session_id = await launch_active_session(client, state, clock, auth=auth, idle_minutes=None)
    await run_for(state, clock, seconds=5 * 3600, step=600)
    await state.jobs.housekeep()
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["idle_minutes"], body["idle_stop_at"]) == ("active", None, None)
    assert body["charged_minutes"] == 300
    assert await _notes(db, session_id) == []


async def test_the_limit_chosen_is_the_one_kept(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth, idle_minutes=5)
    await _after(state, clock, seconds=5 * MINUTE)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["charged_minutes"]) == ("paused", 5)


async def test_a_resumed_session_counts_its_idleness_from_the_resume(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await _after(state, clock, seconds=15 * MINUTE)
    await _after(state, clock, seconds=3600)  # paused time: free, and not idle time
    resumed = await act(client, auth=auth, session_id=session_id, action="resume")
    assert resumed.json()["idle_seconds_left"] == 900
    await _after(state, clock, seconds=15 * MINUTE)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["active_seconds"], body["charged_minutes"]) == ("paused", 1800, 30)


async def test_two_processes_checking_at_once_pause_and_tell_once(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    other = AppState.build(state.settings, clock=clock, db=db)  # a second replica's jobs
    clock.advance(13 * MINUTE)
    warned = await asyncio.gather(state.jobs.check_idle(), other.jobs.check_idle())
    assert sorted(len(report.warned) for report in warned) == [0, 1]
    clock.advance(2 * MINUTE)
    ended = await asyncio.gather(state.jobs.check_idle(), other.jobs.check_idle())
    assert sorted(len(report.paused) for report in ended) == [0, 1]
    assert [n.kind for n in await _notes(db, session_id)] == ["idle_warning", "idle_stopped"]
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["charged_minutes"]) == ("paused", 15)
    async with db.read() as tx:
        pauses = await tx.scalars(
            select(SessionEvent).where(
                SessionEvent.session_id == session_id, SessionEvent.to_status == "paused"
            )
        )
        assert len(list(pauses)) == 1


async def test_an_idle_limit_that_is_not_offered_is_a_422_naming_the_choices(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await _paying_user(client, db, clock)
    for wrong in (7, 0, -5, "15", True, 15.0):
        refused = await client.post(
            "/api/v1/sessions", json={"tier": "starter", "idle_minutes": wrong}, headers=auth
        )
        assert refused.status_code == 422, (wrong, refused.text)
    refused = await client.post(
        "/api/v1/sessions", json={"tier": "starter", "idle_minutes": 7}, headers=auth
    )
    error = assert_error(refused, 422, "invalid_limit")
    assert "5, 15, 30 or 60 minutes, or never" in error["message"]
    assert (await client.get("/api/v1/sessions", headers=auth)).json()["total"] == 0


async def test_the_operators_default_applies_when_none_is_chosen(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    auth = await _paying_user(client, db, clock)

    async def made(setting: int, **fields: object) -> object:
        state.settings.idle_minutes = setting
        session = await create_session(client, auth=auth, **fields)
        await act(client, auth=auth, session_id=session["id"], action="stop")  # one at a time
        return session["idle_minutes"]

    assert await made(45) == 45
    assert await made(45, idle_minutes=45) == 45  # the operator's own is a choice too
    assert await made(0) is None


async def test_metering_at_the_idle_limit_before_the_idle_pass_charges_no_minute_past_it(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    clock.advance(15 * MINUTE)  # the limit falls exactly where minute 16 would start
    await state.jobs.meter()  # the metering pass comes before the idle pass
    clock.advance(20)
    await state.jobs.meter()
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["charged_minutes"]) == ("active", 15)
    await state.jobs.check_idle()
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["active_seconds"], body["charged_minutes"]) == ("paused", 900, 15)
    assert body["charged_usd"] == "2.25"
    assert (await me(client, auth=auth))["balance_usd"] == "7.75"  # no minute paid in advance
    async with db.read() as tx:
        minutes = await tx.scalars(
            select(LedgerEntry.minute).where(LedgerEntry.session_id == session_id)
        )
        assert sorted(minutes) == list(range(1, 16))
    resumed = await act(client, auth=auth, session_id=session_id, action="resume")
    assert resumed.json()["status"] == "active"
    clock.advance(1)
    await state.jobs.meter()  # minute 16 starts at the resume: charged now, once
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["charged_minutes"], body["charged_usd"]) == (16, "2.40")


async def test_a_use_after_the_limit_but_before_the_idle_pass_is_charged_as_usual(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    clock.advance(15 * MINUTE)
    await state.jobs.meter()
    clock.advance(10)
    kept = await act(client, auth=auth, session_id=session_id, action="keep-alive")
    assert kept.status_code == 200, kept.text
    await state.jobs.meter()  # the limit moved: minute 16, begun before the use, is charged
    await state.jobs.housekeep()
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["charged_minutes"]) == ("active", 16)


async def test_a_session_stopped_past_its_limit_before_the_idle_pass_is_billed_to_the_limit(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=15 * MINUTE + 40, step=15)
    stopped = await act(client, auth=auth, session_id=session_id, action="stop")
    assert stopped.status_code == 200, stopped.text
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["active_seconds"], body["charged_minutes"], body["charged_usd"]) == (
        900,
        15,
        "2.25",
    )


async def test_a_session_in_use_is_charged_every_minute_it_starts(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth, idle_minutes=5)
    for second in range(1, 20 * MINUTE + 1, 15):
        clock.advance(15)
        if second % (4 * MINUTE) == 1:  # a use every 4 minutes keeps the 5-minute limit away
            kept = await act(client, auth=auth, session_id=session_id, action="keep-alive")
            assert kept.status_code == 200, kept.text
        await state.jobs.meter()
        await state.jobs.housekeep()
        body = await get_session(client, auth=auth, session_id=session_id)
        assert body["status"] == "active"
        assert body["charged_minutes"] == -(-body["active_seconds"] // MINUTE)  # every started


async def test_every_notice_about_a_gpu_names_it_in_sentence_case(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _paying_user(client, db, clock)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await _after(state, clock, seconds=13 * MINUTE)  # the idle warning
    async with db.read() as tx:
        titles = list(
            await tx.scalars(
                select(Notification.title).where(Notification.session_id == session_id)
            )
        )
    assert len(titles) >= 2  # it was ready; it is about to pause
    assert all(title.startswith("Your starter GPU ") for title in titles), titles
