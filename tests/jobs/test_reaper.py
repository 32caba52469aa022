"""The reaper, driven through the API and `state.jobs.housekeep()` with a fake clock."""

from __future__ import annotations

import httpx

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import (
    act,
    fresh_email,
    get_session,
    launch_active_session,
    launch_ready_session,
    log_in,
    me,
    run_for,
    sign_up,
    signed_in_user,
)


async def _after(state: AppState, clock: FakeClock, *, seconds: float) -> None:
    clock.advance(seconds)
    await state.jobs.housekeep()


async def test_a_ready_session_not_started_in_time_is_abandoned_and_not_billed(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, settings: Settings
) -> None:
    auth = await sign_up(client)
    session_id = await launch_ready_session(client, state, clock, auth=auth)
    await _after(state, clock, seconds=settings.abandon_minutes * 60)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["end_reason"]) == ("terminated", "abandoned")
    assert (body["charged_minutes"], body["cost_usd"]) == (0, "0.00")
    assert (await me(client, auth=auth))["free_minutes"] == settings.free_minutes


async def test_a_ready_session_is_kept_until_the_abandon_timeout(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, settings: Settings
) -> None:
    auth = await sign_up(client)
    session_id = await launch_ready_session(client, state, clock, auth=auth)
    await _after(state, clock, seconds=settings.abandon_minutes * 60 - 1)
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "ready"
    started = await act(client, auth=auth, session_id=session_id, action="start")
    assert started.json()["status"] == "active"


async def test_the_abandon_timeout_follows_the_setting(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, settings: Settings
) -> None:
    settings.abandon_minutes = 2
    auth = await sign_up(client)
    session_id = await launch_ready_session(client, state, clock, auth=auth)
    await _after(state, clock, seconds=120)
    assert (await get_session(client, auth=auth, session_id=session_id))["end_reason"] == (
        "abandoned"
    )


async def test_an_active_session_reaching_max_minutes_is_stopped_at_exactly_that(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth, max_minutes=3)
    await run_for(state, clock, seconds=200)  # metered past the limit: never beyond 3 minutes
    await state.jobs.housekeep()
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["end_reason"]) == ("terminated", "max_minutes")
    assert (body["charged_minutes"], body["active_seconds"], body["cost_usd"]) == (3, 180, "0.45")
    assert (await me(client, auth=auth))["free_minutes"] == 2


async def test_max_minutes_is_charged_exactly_when_the_reaper_comes_late(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="5")
    session_id = await launch_active_session(client, state, clock, auth=auth, max_minutes=2)
    await _after(state, clock, seconds=3600)  # no metering pass in between
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["end_reason"], body["charged_minutes"], body["active_seconds"]) == (
        "max_minutes",
        2,
        120,
    )
    assert (await me(client, auth=auth))["balance_usd"] == "4.70"


async def test_an_active_session_under_max_minutes_keeps_running(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth, max_minutes=3)
    await _after(state, clock, seconds=179)
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "active"


async def test_paused_time_does_not_count_toward_max_minutes(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth, max_minutes=2)
    await _after(state, clock, seconds=60)
    await act(client, auth=auth, session_id=session_id, action="pause")
    await _after(state, clock, seconds=3600)
    await act(client, auth=auth, session_id=session_id, action="resume")
    await _after(state, clock, seconds=59)
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "active"
    await _after(state, clock, seconds=1)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["end_reason"], body["charged_minutes"]) == ("max_minutes", 2)


async def test_a_session_paused_past_the_limit_is_stopped_without_more_charges(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, settings: Settings
) -> None:
    auth = await sign_up(client, email=(email := fresh_email()))
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=90)
    await act(client, auth=auth, session_id=session_id, action="pause")
    await _after(state, clock, seconds=settings.max_pause_hours * 3600 - 1)
    auth = await log_in(client, email=email)  # a day later the first token has expired
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "paused"
    await _after(state, clock, seconds=1)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["end_reason"]) == ("terminated", "pause_expired")
    assert (body["charged_minutes"], body["active_seconds"]) == (2, 90)


async def test_a_reaped_session_gives_its_gpu_back_and_frees_the_plan_slot(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, settings: Settings
) -> None:
    auth = await sign_up(client)
    await launch_ready_session(client, state, clock, auth=auth)
    await _after(state, clock, seconds=settings.abandon_minutes * 60)
    assert await state.orchestrator.providers["demo"].list_instances() == []
    await launch_ready_session(client, state, clock, auth=auth)


async def test_the_reaper_leaves_sessions_without_limits_alone(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, credit_usd="100")
    session_id = await launch_active_session(client, state, clock, auth=auth, idle_minutes=None)
    await run_for(state, clock, seconds=3 * 3600, step=600)
    await state.jobs.housekeep()
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["charged_minutes"]) == ("active", 180)


async def test_the_metering_pass_itself_ends_a_session_at_max_minutes(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth, max_minutes=2)
    clock.advance(150)
    await state.jobs.meter()  # no reaper run: the pass stops it, billed to exactly 2 minutes
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["end_reason"]) == ("terminated", "max_minutes")
    assert (body["charged_minutes"], body["active_seconds"]) == (2, 120)
