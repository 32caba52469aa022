"""Queued launches through the API ("tell me when it's free"): queue, position, cancel, the
cap, expiry on the injected clock, the job launching when a demo GPU frees up, a launch no
longer allowed ended with its reason, and the user told."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, Notification, QueuedLaunch, User
from sizzle.domain.tiers import TIERS
from sizzle.providers.base import Offer
from sizzle.services import accounts
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.api.test_metrics import scrape, value
from tests.helpers import (
    PASSWORD,
    act,
    assert_error,
    get_session,
    launch_ready_session,
    log_in,
    make_user,
    signed_in_user,
)

QUEUE = "/api/v1/launch-queue"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One demo GPU per tier: a single session fills a tier."""
    return settings.model_copy(update={"demo_capacity": 1})


async def _fill_starter(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> tuple[str, dict[str, str]]:
    """The one starter GPU, taken by someone else's ready session: its id, and its owner's
    header."""
    holder = await signed_in_user(client, state.db, clock=clock, plan="enterprise")
    return await launch_ready_session(client, state, clock, auth=holder), holder


async def _queue(
    client: httpx.AsyncClient, auth: dict[str, str], tier: str = "starter", **fields: Any
) -> dict[str, Any]:
    response = await client.post(QUEUE, json={"tier": tier, **fields}, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


async def _entry(client: httpx.AsyncClient, auth: dict[str, str], queue_id: str) -> dict[str, Any]:
    response = await client.get(f"{QUEUE}/{queue_id}", headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


async def _notification(db: Database, key: str) -> Notification | None:
    async with db.read() as tx:
        return await tx.scalar(select(Notification).where(Notification.key == key))


async def _sessions_of(db: Database, user_id: str) -> int:
    async with db.read() as tx:
        return int(
            await tx.scalar(
                select(func.count()).select_from(GpuSession).where(GpuSession.user_id == user_id)
            )
            or 0
        )


async def test_a_full_tier_is_queued_and_launched_once_a_gpu_frees_up(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    taken, holder = await _fill_starter(client, state, clock)
    auth = await signed_in_user(client, db, clock=clock)
    refused = await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=auth)
    assert assert_error(refused, 503, "no_capacity")  # the body says where to queue instead
    assert refused.json()["error"]["details"] == {"queue": QUEUE}

    queued = await _queue(client, auth, max_minutes=30)
    assert queued["status"] == "waiting" and queued["position"] == 1
    assert queued["waited_seconds"] == 0 and queued["session_id"] is None
    day_later = clock.now() + timedelta(hours=24)  # the default wait
    assert queued["expires_at"] == day_later.strftime("%Y-%m-%dT%H:%M:%SZ")
    clock.advance(90)
    await state.jobs.run_once()  # no GPU yet: it waits, and costs nothing
    waiting = await _entry(client, auth, queued["id"])
    assert (waiting["status"], waiting["waited_seconds"]) == ("waiting", 90)

    stopped = await act(client, auth=holder, session_id=taken, action="stop")
    assert stopped.status_code == 200, stopped.text
    clock.advance(10)
    await state.jobs.run_once()
    launched = await _entry(client, auth, queued["id"])
    assert launched["status"] == "launched" and launched["waited_seconds"] == 100
    session = await get_session(client, auth=auth, session_id=launched["session_id"])
    assert (session["tier"], session["status"], session["max_minutes"]) == (
        "starter",
        "provisioning",
        30,
    )
    assert await _notification(db, f"queued_ready:{queued['id']}") is None  # not ready yet

    clock.advance(state.settings.demo_provision_seconds)
    await state.jobs.run_once()
    assert (await _entry(client, auth, queued["id"]))["status"] == "ready"
    told = await _notification(db, f"queued_ready:{queued['id']}")
    assert told is not None and told.link == f"/sessions/{launched['session_id']}"
    assert told.kind == "queued_launch_ready" and told.mail_status == "pending"
    assert "starter GPU you waited for is ready" in told.body
    # told once, in the queue's words: not the general "ready" as well
    assert await _notification(db, f"session_ready:{launched['session_id']}") is None


async def test_the_position_counts_the_launches_ahead_for_the_same_tier(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    await _fill_starter(client, state, clock)
    first = await signed_in_user(client, db, clock=clock)
    second = await signed_in_user(client, db, clock=clock)
    a = await _queue(client, first)
    clock.advance(1)
    b = await _queue(client, second)
    clock.advance(1)
    other_tier = await _queue(client, second, tier="pro")
    assert (a["position"], b["position"], other_tier["position"]) == (1, 2, 1)
    listed = (await client.get(QUEUE, headers=second)).json()
    assert listed["total"] == 2
    assert [(e["tier"], e["position"]) for e in listed["items"]] == [("pro", 1), ("starter", 2)]
    await client.delete(f"{QUEUE}/{a['id']}", headers=first)
    assert (await _entry(client, second, b["id"]))["position"] == 1


async def test_an_account_may_have_three_waiting_at_once(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    await _fill_starter(client, state, clock)
    auth = await signed_in_user(client, db, clock=clock)
    made = [await _queue(client, auth) for _ in range(3)]
    refused = await client.post(QUEUE, json={"tier": "starter"}, headers=auth)
    error = assert_error(refused, 409, "queue_full")
    assert "3 launches waiting" in error["message"]
    await client.delete(f"{QUEUE}/{made[0]['id']}", headers=auth)
    await _queue(client, auth)


async def test_cancel_ends_the_wait_and_nothing_is_launched(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    taken, holder = await _fill_starter(client, state, clock)
    user = await make_user(db, now=clock.now())
    auth = await log_in(client, email=user.email)
    queued = await _queue(client, auth)
    stranger = await signed_in_user(client, db, clock=clock)
    assert_error(await client.delete(f"{QUEUE}/{queued['id']}", headers=stranger), 404)
    assert_error(await client.get(f"{QUEUE}/{queued['id']}", headers=stranger), 404)

    assert (await client.delete(f"{QUEUE}/{queued['id']}", headers=auth)).status_code == 204
    assert (await client.delete(f"{QUEUE}/{queued['id']}", headers=auth)).status_code == 204
    await act(client, auth=holder, session_id=taken, action="stop")
    await state.jobs.run_once()
    cancelled = await _entry(client, auth, queued["id"])
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "You cancelled it.")
    assert cancelled["position"] is None
    assert await _sessions_of(db, user.id) == 0


async def test_a_launched_one_cannot_be_cancelled_its_session_is_stopped_instead(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock)
    queued = await _queue(client, auth)  # a GPU is free: the next pass launches it
    await state.jobs.retry_queued_now()
    session_id = (await _entry(client, auth, queued["id"]))["session_id"]
    refused = await client.delete(f"{QUEUE}/{queued['id']}", headers=auth)
    error = assert_error(refused, 409, "already_launched")
    assert session_id in error["message"]


async def test_a_launch_that_waited_too_long_expires_and_the_user_is_told(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    holder = await make_user(db, now=clock.now(), plan="enterprise")
    taken = await launch_ready_session(
        client, state, clock, auth=await log_in(client, email=holder.email)
    )
    user = await make_user(db, now=clock.now())
    queued = await _queue(client, await log_in(client, email=user.email))
    clock.advance(24 * 3600 - 1)
    assert (await state.jobs.retry_queued_now()).expired == 0
    clock.advance(1)
    # a day on, sign-ins have expired: sign in again, and the GPU is given back
    auth = await log_in(client, email=user.email)
    await act(
        client, auth=await log_in(client, email=holder.email), session_id=taken, action="stop"
    )
    done = await state.jobs.retry_queued_now()
    assert (done.expired, done.launched) == (1, 0)
    expired = await _entry(client, auth, queued["id"])
    assert expired["status"] == "expired"
    assert expired["reason"] == "No starter GPU became free within 24 hours."
    told = await _notification(db, f"queued_ended:{queued['id']}")
    assert told is not None and told.kind == "queued_launch_ended"
    assert "Nothing was charged" in told.body


async def test_the_longest_wait_is_a_setting(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    short = settings.model_copy(update={"queue_max_hours": 2})
    state = AppState.build(short, clock=clock, db=db)
    transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://sizzle.test") as client:
        auth = await signed_in_user(client, db, clock=clock)
        queued = await _queue(client, auth)
    assert queued["expires_at"].startswith("2026-03-01T14:00:00")


async def test_a_launch_no_longer_allowed_is_ended_with_its_reason_not_retried(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    user = await make_user(db, now=clock.now(), plan="pro", credit_usd="10")
    auth = await log_in(client, email=user.email)
    queued = await _queue(client, auth, tier="ultra")
    async with db.transaction() as tx:  # the plan changed while it waited
        found = await tx.get(User, user.id)
        assert found is not None
        found.plan = "free"
    done = await state.jobs.retry_queued_now()  # an ultra GPU is free now
    assert (done.launched, done.refused) == (0, 1)
    ended = await _entry(client, auth, queued["id"])
    assert ended["status"] == "refused"
    assert ended["reason"] == "The free plan does not include the ultra tier."
    told = await _notification(db, f"queued_ended:{queued['id']}")
    assert told is not None
    assert "was not launched: the free plan does not include the ultra tier." in told.body
    assert await _sessions_of(db, user.id) == 0
    assert (await state.jobs.retry_queued_now()).refused == 0  # ended once, not retried


async def test_a_suspended_accounts_launch_ends_without_launching(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    user = await make_user(db, now=clock.now())
    auth = await log_in(client, email=user.email)
    queued = await _queue(client, auth)
    operator = await make_user(db, now=clock.now(), is_admin=True)
    async with db.transaction() as tx:
        found = await tx.get(User, user.id)
        assert found is not None
        accounts.set_suspended(tx, found, suspended=True, operator=operator, now=clock.now())
    done = await state.jobs.retry_queued_now()
    assert (done.launched, done.refused) == (0, 1)
    assert await _sessions_of(db, user.id) == 0
    async with db.read() as tx:
        entry = await tx.get(QueuedLaunch, queued["id"])
    assert entry is not None and entry.status == "refused"
    assert entry.reason == "The account is no longer active."


async def test_queueing_is_refused_as_a_direct_launch_would_be(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    broke = await signed_in_user(client, db, clock=clock, free_minutes=0)
    assert_error(await client.post(QUEUE, json={"tier": "starter"}, headers=broke), 402)
    auth = await signed_in_user(client, db, clock=clock)
    assert_error(await client.post(QUEUE, json={"tier": "ultra"}, headers=auth), 403)
    assert_error(await client.post(QUEUE, json={"tier": "gigantic"}, headers=auth), 422)
    bad_cap = {"tier": "starter", "spend_cap_usd": "lots"}
    assert_error(await client.post(QUEUE, json=bad_cap, headers=auth), 422, "invalid_limit")
    assert_error(await client.get(QUEUE, params={"status": "asleep"}, headers=auth), 422)
    assert (await client.get(QUEUE, headers=auth)).json() == {"items": [], "total": 0}


async def test_a_gpu_that_fails_to_start_puts_the_launch_back_in_line_then_ends_it(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    """Between the offer and the launch someone else takes the GPU: the session fails (never
    billed), and the launch waits again in its place, three times at most."""
    auth = await signed_in_user(client, db, clock=clock)
    queued = await _queue(client, auth)
    demo = state.providers["demo"]
    tier = TIERS["starter"]
    offer = Offer("demo", "demo-starter", tier.gpu_types[0], 1, 24, 0)
    for attempt in range(1, 4):
        assert (await state.jobs.retry_queued_now()).launched == 1
        taken = await demo.provision(offer, session_id=f"other{attempt}", model=None)
        await state.jobs.housekeep()  # the launch finds no GPU: the session fails
        await state.jobs.retry_queued_now()
        entry = await _entry(client, auth, queued["id"])
        if attempt < 3:
            assert entry["status"] == "waiting" and entry["position"] == 1
            assert entry["reason"].startswith("The GPU found could not be started (")
        await demo.terminate(taken)
    assert entry["status"] == "refused"
    assert entry["reason"].startswith("A GPU was found 3 times, but none of them could be")
    async with db.read() as tx:
        failed = list(await tx.scalars(select(GpuSession.charged_minutes)))
    assert failed == [0, 0, 0]


async def test_the_list_is_paged_newest_first_and_filters_by_status(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    await _fill_starter(client, state, clock)
    auth = await signed_in_user(client, db, clock=clock)
    made = []
    for _ in range(3):
        made.append(await _queue(client, auth))
        clock.advance(timedelta(minutes=1).total_seconds())
    await client.delete(f"{QUEUE}/{made[1]['id']}", headers=auth)
    page = (await client.get(QUEUE, params={"limit": 2}, headers=auth)).json()
    assert page["total"] == 3 and [e["id"] for e in page["items"]] == [
        made[2]["id"],
        made[1]["id"],
    ]
    waiting = (await client.get(QUEUE, params={"status": "waiting"}, headers=auth)).json()
    assert [e["id"] for e in waiting["items"]] == [made[2]["id"], made[0]["id"]]


async def test_metrics_count_the_waiting_the_longest_wait_and_what_the_job_did(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    await _fill_starter(client, state, clock)
    await _queue(client, await signed_in_user(client, db, clock=clock))
    clock.advance(300)
    await _queue(client, await signed_in_user(client, db, clock=clock), tier="pro")
    found = await scrape(client)
    assert value(found, "sizzle_queued_launches_waiting", tier="starter") == 1
    assert value(found, "sizzle_queued_launches_waiting", tier="pro") == 1
    assert value(found, "sizzle_queued_launch_oldest_wait_seconds") == 300
    await state.jobs.retry_queued_now()  # a pro GPU is free: that one is launched
    after = await scrape(client)
    assert after[("sizzle_queued_launches_waiting", (("tier", "pro"),))] == 0
    assert value(after, "sizzle_queued_launch_outcomes_total", outcome="launched") == 1


async def test_the_account_export_holds_what_waits_and_deleting_the_account_ends_it(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    await _fill_starter(client, state, clock)
    user = await make_user(db, now=clock.now())
    auth = await log_in(client, email=user.email)
    queued = await _queue(client, auth)
    exported = (await client.get("/api/v1/account/export", headers=auth)).json()
    assert [q["id"] for q in exported["queued_launches"]] == [queued["id"]]
    deleted = await client.request(
        "DELETE", "/api/v1/account", json={"password": PASSWORD}, headers=auth
    )
    assert deleted.status_code == 204, deleted.text
    async with db.read() as tx:
        entry = await tx.get(QueuedLaunch, queued["id"])
    assert entry is not None
    assert (entry.status, entry.reason) == ("cancelled", "The account was deleted.")


async def test_the_session_a_queued_launch_makes_keeps_the_idle_limit_asked_for(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, plan="enterprise", credit_usd="50")
    bad = await client.post(QUEUE, json={"tier": "starter", "idle_minutes": 7}, headers=auth)
    assert assert_error(bad, 422, "invalid_limit")["details"] == {"field": "idle_minutes"}
    asked: dict[str, tuple[dict[str, Any], int | None]] = {  # a free GPU of each tier
        "starter": ({"idle_minutes": 30}, 30),
        "pro": ({"idle_minutes": None}, None),  # never
        "beast": ({}, state.settings.idle_minutes),  # left out: the server's default
    }
    queued = {
        tier: await _queue(client, auth, tier, **fields) for tier, (fields, _) in asked.items()
    }
    await state.jobs.retry_queued_now()
    for tier, (_, expected) in asked.items():
        launched = await _entry(client, auth, queued[tier]["id"])
        session = await get_session(client, auth=auth, session_id=launched["session_id"])
        assert (session["tier"], session["idle_minutes"]) == (tier, expected)


async def _ready_from_the_queue(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, auth: dict[str, str]
) -> tuple[dict[str, Any], str]:
    """A launch queued while the tier is full, launched and ready once its GPU frees up: the
    queue entry and its session's id."""
    taken, holder = await _fill_starter(client, state, clock)
    queued = await _queue(client, auth)
    await act(client, auth=holder, session_id=taken, action="stop")
    await state.jobs.run_once()
    clock.advance(state.settings.demo_provision_seconds)
    await state.jobs.run_once()
    entry = await _entry(client, auth, queued["id"])
    assert entry["status"] == "ready"
    return entry, entry["session_id"]


async def test_a_gpu_ready_from_the_queue_is_held_for_its_away_user_at_no_charge(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="5")
    entry, session_id = await _ready_from_the_queue(client, state, clock, auth)
    told = await _notification(db, f"queued_ready:{entry['id']}")
    assert told is not None and told.mail_status == "pending"
    assert "holds it for you for 30 minutes, until 12:30 UTC" in told.body
    assert "Nothing is charged until you start it" in told.body
    clock.advance(state.settings.abandon_minutes * 60)  # a launch made at the page: released
    await state.jobs.run_once()
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["charged_minutes"]) == ("ready", 0)  # held: they were away
    clock.advance(20 * 60 - 1)
    await state.jobs.run_once()
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "ready"
    clock.advance(1)
    await state.jobs.run_once()
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["end_reason"], body["charged_minutes"]) == (
        "terminated",
        "abandoned",
        0,
    )
    released = await _notification(db, f"session_auto_stopped:{session_id}")
    assert released is not None and "Nothing was charged" in released.body
    assert (await client.get("/api/v1/auth/me", headers=auth)).json()["balance_usd"] == "5.00"


async def test_a_gpu_ready_from_the_queue_started_within_its_hold_is_billed_from_the_start(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="5")
    _, session_id = await _ready_from_the_queue(client, state, clock, auth)
    clock.advance(25 * 60)
    await state.jobs.run_once()
    started = await act(client, auth=auth, session_id=session_id, action="start")
    assert started.json()["status"] == "active", started.text
    clock.advance(30)
    await state.jobs.run_once()
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["active_seconds"], body["charged_minutes"]) == ("active", 30, 1)


async def test_the_hold_of_a_gpu_ready_from_the_queue_is_a_setting(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    state.settings.queue_hold_minutes = 60
    auth = await signed_in_user(client, db, clock=clock)
    entry, session_id = await _ready_from_the_queue(client, state, clock, auth)
    told = await _notification(db, f"queued_ready:{entry['id']}")
    assert told is not None and "for 1 hour, until 13:00 UTC" in told.body
    clock.advance(60 * 60 - 1)
    await state.jobs.run_once()
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "ready"
