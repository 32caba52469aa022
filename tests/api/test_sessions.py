"""Sessions through the API: create, the plan and money checks, listing, and the lifecycle."""

from __future__ import annotations

import httpx

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import (
    act,
    assert_error,
    create_session,
    get_session,
    launch_active_session,
    launch_ready_session,
    run_for,
    sign_up,
    signed_in_user,
)

SESSIONS = "/api/v1/sessions"
SESSION_FIELDS = {
    "id",
    "status",
    "tier",
    "model",
    "provider",
    "gpu_type",
    "gpu_count",
    "price_per_minute_usd",
    "active_seconds",
    "charged_minutes",
    "cost_usd",
    "created_at",
    "started_at",
    "ended_at",
    "end_reason",
}


# --- create ----------------------------------------------------------------------------------


async def test_create_answers_at_once_with_a_pending_session(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    response = await client.post(
        SESSIONS, json={"tier": "starter", "model": "llama3.1:8b"}, headers=auth
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert SESSION_FIELDS <= body.keys()
    assert body["status"] == "pending"
    assert body["tier"] == "starter"
    assert body["model"] == "llama3.1:8b"
    assert body["price_per_minute_usd"] == "0.15"
    assert body["charged_minutes"] == 0
    assert body["active_seconds"] == 0
    assert body["cost_usd"] == "0.00"
    assert body["started_at"] is None and body["ended_at"] is None


async def test_the_jobs_bring_a_session_to_ready_with_its_gpu(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_ready_session(client, state, clock, auth=auth, tier="pro")
    body = await get_session(client, auth=auth, session_id=session_id)
    assert body["gpu_type"] in ("A100 40GB", "A100 80GB")
    assert body["gpu_count"] == 1
    assert body["charged_minutes"] == 0


async def test_a_user_does_not_see_the_provider(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_ready_session(client, state, clock, auth=auth)
    assert (await get_session(client, auth=auth, session_id=session_id))["provider"] is None


async def test_an_admin_sees_the_provider(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, is_admin=True)
    session_id = await launch_ready_session(client, state, clock, auth=auth)
    assert (await get_session(client, auth=auth, session_id=session_id))["provider"] == "demo"


async def test_create_without_free_minutes_or_credit_is_402(
    client: httpx.AsyncClient, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0)
    response = await client.post(SESSIONS, json={"tier": "starter"}, headers=auth)
    assert_error(response, 402, "insufficient_credit")


async def test_create_with_credit_short_of_one_minute_is_402(
    client: httpx.AsyncClient, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="0.44")
    response = await client.post(SESSIONS, json={"tier": "pro"}, headers=auth)
    assert_error(response, 402, "insufficient_credit")


async def test_credit_for_exactly_one_minute_is_enough_to_create(
    client: httpx.AsyncClient, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="0.45")
    await create_session(client, auth=auth, tier="pro")


async def test_the_free_plan_may_not_rent_ultra(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    response = await client.post(SESSIONS, json={"tier": "ultra"}, headers=auth)
    assert_error(response, 403, "tier_not_in_plan")


async def test_the_pro_plan_may_rent_ultra(
    client: httpx.AsyncClient, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, plan="pro", credit_usd="10")
    assert (await create_session(client, auth=auth, tier="ultra"))["price_per_minute_usd"] == (
        "4.00"
    )


async def test_the_free_plan_allows_one_session_at_a_time(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    await create_session(client, auth=auth)
    second = await client.post(SESSIONS, json={"tier": "starter"}, headers=auth)
    assert_error(second, 409, "too_many_sessions")


async def test_a_stopped_session_frees_the_plan_slot(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    first = await create_session(client, auth=auth)
    assert (await act(client, auth=auth, session_id=first["id"], action="stop")).status_code == 200
    await create_session(client, auth=auth)


async def test_the_starter_plan_allows_two_sessions_at_a_time(
    client: httpx.AsyncClient, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, plan="starter")
    await create_session(client, auth=auth)
    await create_session(client, auth=auth, tier="pro")
    third = await client.post(SESSIONS, json={"tier": "starter"}, headers=auth)
    assert_error(third, 409, "too_many_sessions")


async def test_an_unknown_tier_is_422(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    response = await client.post(SESSIONS, json={"tier": "mega"}, headers=auth)
    assert "starter" in assert_error(response, 422, "unknown_tier")["message"]


async def test_max_minutes_out_of_range_is_422(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    for bad in (0, -5, 10**12, 10**40, 1.5, "lots", True):
        response = await client.post(
            SESSIONS, json={"tier": "starter", "max_minutes": bad}, headers=auth
        )
        assert_error(response, 422)


async def test_unknown_fields_in_a_session_request_are_422(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    response = await client.post(SESSIONS, json={"tier": "starter", "gpus": 8}, headers=auth)
    assert_error(response, 422, "validation_error")


async def test_a_session_request_without_a_tier_is_422(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    assert_error(await client.post(SESSIONS, json={}, headers=auth), 422, "validation_error")


async def test_malformed_json_for_a_session_is_422(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    response = await client.post(
        SESSIONS,
        content=b'{"tier": "starter",',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert_error(response, 422, "validation_error")


async def test_creating_a_session_needs_a_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(SESSIONS, json={"tier": "starter"}), 401)


# --- capacity --------------------------------------------------------------------------------


async def _fill_starter_capacity(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> dict[str, str]:
    """Launch as many starter sessions as the demo has GPUs; the header of their owner."""
    auth = await signed_in_user(client, db, clock=clock, plan="enterprise")
    for _ in range(state.settings.demo_capacity):
        await launch_ready_session(client, state, clock, auth=auth)
    return auth


async def _starter_availability(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/api/v1/availability")
    assert response.status_code == 200, response.text
    return next(row for row in response.json() if row["tier"] == "starter")


async def test_tiers_list_the_four_tiers_with_their_prices(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/tiers")
    assert response.status_code == 200
    prices = {t["name"]: t["price_per_minute_usd"] for t in response.json()}
    assert prices == {"starter": "0.15", "pro": "0.45", "beast": "1.50", "ultra": "4.00"}
    ultra = next(t for t in response.json() if t["name"] == "ultra")
    assert (ultra["min_gpus"], ultra["min_vram_gb"]) == (8, 192)
    assert set(ultra["gpu_types"]) == {"B200", "B300"}


async def test_every_tier_is_available_when_nothing_is_rented(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/availability")
    assert response.status_code == 200
    rows = {row["tier"]: row for row in response.json()}
    assert set(rows) == {"starter", "pro", "beast", "ultra"}
    assert all(row["available"] for row in rows.values())
    assert rows["starter"]["from_price_per_minute_usd"] == "0.15"


async def test_a_tier_with_every_demo_gpu_in_use_is_not_available(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    await _fill_starter_capacity(client, state, clock, db)
    assert (await _starter_availability(client))["available"] is False
    others = (await client.get("/api/v1/availability")).json()
    assert all(row["available"] for row in others if row["tier"] != "starter")


async def test_create_is_503_when_the_tier_has_no_capacity(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    await _fill_starter_capacity(client, state, clock, db)
    auth = await sign_up(client)
    response = await client.post(SESSIONS, json={"tier": "starter"}, headers=auth)
    assert_error(response, 503, "no_capacity")


async def test_stopping_a_session_gives_its_gpu_back(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await _fill_starter_capacity(client, state, clock, db)
    newest = (await client.get(SESSIONS, headers=auth)).json()["items"][0]["id"]
    assert (await act(client, auth=auth, session_id=newest, action="stop")).status_code == 200
    assert (await _starter_availability(client))["available"] is True


# --- list and read ---------------------------------------------------------------------------


async def test_list_is_newest_first_with_a_total(
    client: httpx.AsyncClient, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, plan="pro")
    made = []
    for tier in ("starter", "pro", "beast"):
        made.append((await create_session(client, auth=auth, tier=tier))["id"])
        clock.advance(1)
    response = await client.get(SESSIONS, headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 3
    assert [s["id"] for s in body["items"]] == made[::-1]


async def test_list_pages_with_limit_and_offset(
    client: httpx.AsyncClient, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, plan="pro")
    made = []
    for tier in ("starter", "pro", "beast", "starter"):
        made.append((await create_session(client, auth=auth, tier=tier))["id"])
        clock.advance(1)
    page = (await client.get(SESSIONS, params={"limit": 2, "offset": 1}, headers=auth)).json()
    assert page["total"] == 4
    assert [s["id"] for s in page["items"]] == [made[2], made[1]]


async def test_list_default_limit_is_50_and_at_most_500(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    assert (await client.get(SESSIONS, params={"limit": 500}, headers=auth)).status_code == 200
    assert_error(await client.get(SESSIONS, params={"limit": 501}, headers=auth), 422)
    assert_error(await client.get(SESSIONS, params={"limit": 0}, headers=auth), 422)
    assert_error(await client.get(SESSIONS, params={"offset": -1}, headers=auth), 422)
    schema = (await client.get("/openapi.json")).json()
    params = schema["paths"][SESSIONS]["get"]["parameters"]
    limit = next(p for p in params if p["name"] == "limit")["schema"]
    assert limit["default"] == 50
    assert limit["maximum"] == 500


async def test_list_shows_only_my_sessions(client: httpx.AsyncClient) -> None:
    mine, theirs = await sign_up(client), await sign_up(client)
    await create_session(client, auth=theirs)
    body = (await client.get(SESSIONS, headers=mine)).json()
    assert body == {"items": [], "total": 0}


async def test_another_users_session_is_404(client: httpx.AsyncClient) -> None:
    mine, theirs = await sign_up(client), await sign_up(client)
    session_id = (await create_session(client, auth=theirs))["id"]
    assert_error(await client.get(f"{SESSIONS}/{session_id}", headers=mine), 404, "not_found")


async def test_another_user_cannot_act_on_my_session(client: httpx.AsyncClient) -> None:
    mine, theirs = await sign_up(client), await sign_up(client)
    session_id = (await create_session(client, auth=mine))["id"]
    for action in ("start", "pause", "resume", "stop"):
        response = await act(client, auth=theirs, session_id=session_id, action=action)
        assert_error(response, 404, "not_found")
    assert (await get_session(client, auth=mine, session_id=session_id))["status"] == "pending"


async def test_an_unknown_session_is_404(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    assert_error(await client.get(f"{SESSIONS}/{'f' * 32}", headers=auth), 404)
    assert_error(await client.get(f"{SESSIONS}/{'x' * 5000}", headers=auth), 404)


# --- lifecycle -------------------------------------------------------------------------------


async def test_start_makes_a_ready_session_active(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_ready_session(client, state, clock, auth=auth)
    started = await act(client, auth=auth, session_id=session_id, action="start")
    assert started.status_code == 200
    assert started.json()["status"] == "active"
    assert started.json()["started_at"] is not None


async def test_starting_a_pending_session_is_409(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    session_id = (await create_session(client, auth=auth))["id"]
    response = await act(client, auth=auth, session_id=session_id, action="start")
    assert_error(response, 409, "invalid_transition")


async def test_starting_twice_is_409(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    response = await act(client, auth=auth, session_id=session_id, action="start")
    assert_error(response, 409, "invalid_transition")


async def test_pausing_a_ready_session_is_409(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_ready_session(client, state, clock, auth=auth)
    response = await act(client, auth=auth, session_id=session_id, action="pause")
    assert_error(response, 409, "invalid_transition")


async def test_resuming_an_active_session_is_409(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    response = await act(client, auth=auth, session_id=session_id, action="resume")
    assert_error(response, 409, "invalid_transition")


async def test_pause_then_resume(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    paused = await act(client, auth=auth, session_id=session_id, action="pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    resumed = await act(client, auth=auth, session_id=session_id, action="resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"


async def test_paused_time_is_not_billed(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=30)
    await act(client, auth=auth, session_id=session_id, action="pause")
    await run_for(state, clock, seconds=3600, step=600)
    resumed = (await act(client, auth=auth, session_id=session_id, action="resume")).json()
    assert resumed["charged_minutes"] == 1
    assert resumed["active_seconds"] == 30
    await run_for(state, clock, seconds=30)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["charged_minutes"], body["active_seconds"]) == (1, 60)
    await run_for(state, clock, seconds=1, step=1)
    assert (await get_session(client, auth=auth, session_id=session_id))["charged_minutes"] == 2


async def test_stop_ends_an_active_session_billed_to_now(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    clock.advance(61)  # no metering pass in between: stop itself charges what is due
    body = (await act(client, auth=auth, session_id=session_id, action="stop")).json()
    assert body["status"] == "terminated"
    assert body["end_reason"] == "user"
    assert body["ended_at"] is not None
    assert (body["charged_minutes"], body["active_seconds"], body["cost_usd"]) == (2, 61, "0.30")


async def test_stopping_twice_is_fine(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    first = await act(client, auth=auth, session_id=session_id, action="stop")
    clock.advance(120)
    second = await act(client, auth=auth, session_id=session_id, action="stop")
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()


async def test_a_stopped_session_cannot_be_started_or_resumed(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_ready_session(client, state, clock, auth=auth)
    await act(client, auth=auth, session_id=session_id, action="stop")
    for action in ("start", "pause", "resume"):
        response = await act(client, auth=auth, session_id=session_id, action=action)
        assert_error(response, 409, "invalid_transition")


async def test_a_session_stopped_while_pending_is_never_launched_nor_billed(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = (await create_session(client, auth=auth))["id"]
    await act(client, auth=auth, session_id=session_id, action="stop")
    await state.jobs.run_once()
    clock.advance(600)
    await state.jobs.run_once()
    body = await get_session(client, auth=auth, session_id=session_id)
    assert body["status"] == "terminated"
    assert body["provider"] is None and body["charged_minutes"] == 0


async def test_a_stopped_ready_session_costs_nothing(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, settings: Settings
) -> None:
    auth = await sign_up(client)
    session_id = await launch_ready_session(client, state, clock, auth=auth)
    clock.advance(120)
    body = (await act(client, auth=auth, session_id=session_id, action="stop")).json()
    assert (body["charged_minutes"], body["cost_usd"], body["active_seconds"]) == (0, "0.00", 0)
    me = (await client.get("/api/v1/auth/me", headers=auth)).json()
    assert me["free_minutes"] == settings.free_minutes


async def test_a_launch_that_loses_the_last_gpu_fails_unbilled(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, settings: Settings
) -> None:
    settings.demo_capacity = 1
    first, second = await sign_up(client), await sign_up(client)
    await create_session(client, auth=first)
    clock.advance(1)
    late = (await create_session(client, auth=second))["id"]  # the GPU was free when asked
    await state.jobs.run_once()
    body = await get_session(client, auth=second, session_id=late)
    assert (body["status"], body["end_reason"]) == ("failed", "provisioning_failed")
    assert body["error"] and body["charged_minutes"] == 0
    assert (await client.get("/api/v1/auth/me", headers=second)).json()["free_minutes"] == 5


async def test_stopping_a_failed_session_is_fine(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, settings: Settings
) -> None:
    settings.demo_capacity = 1
    first, second = await sign_up(client), await sign_up(client)
    await create_session(client, auth=first)
    clock.advance(1)
    late = (await create_session(client, auth=second))["id"]
    await state.jobs.run_once()
    stopped = await act(client, auth=second, session_id=late, action="stop")
    assert stopped.status_code == 200, stopped.text
    assert (stopped.json()["status"], stopped.json()["end_reason"]) == (
        "failed",
        "provisioning_failed",
    )


async def test_starting_without_money_for_the_first_minute_is_402(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, plan="starter", free_minutes=1)
    waiting = await launch_ready_session(client, state, clock, auth=auth)
    await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=1, step=1)  # its first minute takes the only free one
    response = await act(client, auth=auth, session_id=waiting, action="start")
    assert_error(response, 402, "insufficient_credit")
    assert (await get_session(client, auth=auth, session_id=waiting))["status"] == "ready"


async def test_a_providers_launch_progress_shows_on_the_session(
    client: httpx.AsyncClient, state: AppState
) -> None:
    auth = await sign_up(client)
    session_id = (await create_session(client, auth=auth, tier="starter"))["id"]
    await state.jobs.housekeep()  # provisioning: the demo GPU is not ready for 5 s
    assert (await get_session(client, auth=auth, session_id=session_id))["progress"] is None
    await state.providers["demo"].on_progress(session_id, "downloading", 42.7)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert body["progress"] == {"phase": "downloading", "percent": 42}


# --- the model of a session ------------------------------------------------------------------


async def test_a_library_slug_becomes_the_build_that_fits_the_tier(
    client: httpx.AsyncClient,
) -> None:
    auth = await sign_up(client)
    session = await create_session(client, auth=auth, tier="starter", model="llama3.1-8b")
    assert (session["model"], session["model_name"]) == ("llama3.1:8b", "Llama 3.1 8B")
    assert session["warnings"] == []


async def test_a_model_the_library_does_not_know_is_named_by_its_tag(
    client: httpx.AsyncClient,
) -> None:
    auth = await sign_up(client)
    session = await create_session(client, auth=auth, tier="starter", model="example/unlisted:7b")
    assert session["model"] == session["model_name"] == "example/unlisted:7b"


async def test_a_model_too_big_for_the_tier_is_422_naming_the_smallest_tier_that_fits(
    client: httpx.AsyncClient,
) -> None:
    auth = await sign_up(client)
    response = await client.post(
        SESSIONS, json={"tier": "starter", "model": "llama3.3-70b"}, headers=auth
    )
    error = assert_error(response, 422, "model_does_not_fit")
    assert error["details"]["smallest_tier"] == "beast"
    assert error["details"]["needs_vram_gb"] > error["details"]["tier_vram_gb"] == 24
    assert "beast" in error["message"]
    by_tag = await client.post(
        SESSIONS, json={"tier": "starter", "model": "llama3.1:8b-instruct-fp16"}, headers=auth
    )
    assert by_tag.status_code == 201, by_tag.text  # 16 GB of weights still fit 24 GB


async def test_a_model_no_tier_can_hold_is_422(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    response = await client.post(
        SESSIONS, json={"tier": "starter", "model": "deepseek-v3-671b"}, headers=auth
    )
    error = assert_error(response, 422)
    assert error["details"]["smallest_tier"] in ("ultra", None)


async def test_an_ollama_tag_the_library_does_not_know_is_taken_with_a_warning(
    client: httpx.AsyncClient,
) -> None:
    auth = await sign_up(client)
    session = await create_session(client, auth=auth, tier="starter", model="someone/custom:7b")
    assert session["model"] == "someone/custom:7b"
    assert len(session["warnings"]) == 1
    assert "cannot say whether it fits" in session["warnings"][0]


async def test_a_model_name_ollama_would_refuse_is_422(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    for bad in ("Bad Name!", "llama3:8b; rm -rf /", "../etc/passwd", ":latest"):
        response = await client.post(SESSIONS, json={"tier": "starter", "model": bad}, headers=auth)
        assert_error(response, 422, "unknown_model")


async def test_a_demo_session_says_plainly_that_no_model_runs_behind_it(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session = await create_session(client, auth=auth, tier="starter", model="llama3.1-8b")
    await state.jobs.run_once()
    clock.advance(state.settings.demo_provision_seconds)
    await state.jobs.run_once()
    await act(client, auth=auth, session_id=session["id"], action="start")
    seen = await get_session(client, auth=auth, session_id=session["id"])
    assert seen["status"] == "active"
    assert seen["workspace"]["chat_available"] is False
    assert "demo session" in seen["workspace"]["message"]
    chat = await client.post(
        "/v1/chat/completions",
        json={"model": "llama3.1-8b", "messages": [{"role": "user", "content": "hi"}]},
        headers=auth,
    )
    assert (
        "no model runs behind it" in assert_error(chat, 409, "demo_session_has_no_model")["message"]
    )
