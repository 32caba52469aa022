"""Balance and transactions through the API: free minutes first, then credit, never below zero."""

from __future__ import annotations

import httpx

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import (
    act,
    assert_error,
    get_session,
    grant,
    launch_active_session,
    launch_ready_session,
    me,
    run_for,
    sign_up,
    signed_in_user,
)

BALANCE = "/api/v1/billing/balance"
TRANSACTIONS = "/api/v1/billing/transactions"


async def _balance(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, object]:
    response = await client.get(BALANCE, headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


async def _transactions(
    client: httpx.AsyncClient, auth: dict[str, str], **params: int
) -> dict[str, object]:
    response = await client.get(TRANSACTIONS, params=params, headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_new_user_has_free_minutes_and_no_credit(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    balance = await _balance(client, await sign_up(client))
    assert balance == {
        "balance_usd": "0.00",
        "balance_micros": 0,
        "free_minutes": settings.free_minutes,
        "included_minutes": 0,
    }


async def test_granted_credit_shows_in_balance_and_me(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await sign_up(client, email="granted@example.com")
    await grant(db, email="granted@example.com", usd="12.5", now=clock.now())
    balance = await _balance(client, auth)
    assert (balance["balance_usd"], balance["balance_micros"]) == ("12.50", 12_500_000)
    assert (await me(client, auth=auth))["balance_usd"] == "12.50"


async def test_a_new_user_has_one_transaction_for_the_signup_minutes(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    page = await _transactions(client, await sign_up(client))
    assert page["total"] == 1
    (entry,) = page["items"]
    assert entry["direction"] == "in"
    assert (entry["amount"], entry["unit"]) == (settings.free_minutes, "minutes")
    assert entry["session_id"] is None


async def test_a_grant_is_an_incoming_usd_transaction(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await sign_up(client, email="grant-entry@example.com")
    await grant(db, email="grant-entry@example.com", usd="3", now=clock.now())
    newest = (await _transactions(client, auth))["items"][0]
    assert newest["kind"] == "credit_grant"
    assert newest["direction"] == "in"
    assert (newest["amount"], newest["unit"], newest["amount_usd"]) == (
        3_000_000,
        "usd_micros",
        "3.00",
    )


async def test_free_minutes_are_spent_before_credit(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=2, credit_usd="1")
    await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=61)  # minutes 1 and 2 started: both free
    assert await _balance(client, auth) == {
        "balance_usd": "1.00",
        "balance_micros": 1_000_000,
        "free_minutes": 0,
        "included_minutes": 0,
    }
    await run_for(state, clock, seconds=60)  # minute 3 started: paid from credit
    assert (await _balance(client, auth))["balance_usd"] == "0.85"


async def test_each_session_minute_is_a_transaction_with_its_session_and_minute(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=1, credit_usd="1")
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=150)
    charges = [
        e for e in (await _transactions(client, auth))["items"] if e["kind"] == "session_minute"
    ]
    assert [(e["session_id"], e["minute"]) for e in charges] == [
        (session_id, 3),
        (session_id, 2),
        (session_id, 1),
    ]
    assert all(e["direction"] == "out" for e in charges)
    assert [(e["unit"], e["amount"]) for e in charges] == [
        ("usd_micros", 150_000),
        ("usd_micros", 150_000),
        ("minutes", 1),
    ]


async def test_transactions_are_newest_first_and_paged(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await sign_up(client, email="paged@example.com")
    for usd in ("1", "2", "3"):
        clock.advance(1)
        await grant(db, email="paged@example.com", usd=usd, now=clock.now())
    everything = await _transactions(client, auth)
    assert everything["total"] == 4
    assert [e["amount"] for e in everything["items"][:3]] == [3_000_000, 2_000_000, 1_000_000]
    page = await _transactions(client, auth, limit=2, offset=1)
    assert page["total"] == 4
    assert [e["amount"] for e in page["items"]] == [2_000_000, 1_000_000]


async def test_transactions_default_to_pages_of_50(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await sign_up(client, email="many@example.com")
    for _ in range(50):
        await grant(db, email="many@example.com", usd="1", now=clock.now())
    page = await _transactions(client, auth)
    assert (len(page["items"]), page["total"]) == (50, 51)
    assert len((await _transactions(client, auth, limit=500))["items"]) == 51


async def test_transactions_bad_paging_is_422(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    for params in ({"limit": 501}, {"limit": 0}, {"offset": -1}, {"limit": "ten"}):
        assert_error(await client.get(TRANSACTIONS, params=params, headers=auth), 422)


async def test_i_never_see_another_users_transactions(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    mine, theirs = await sign_up(client), await sign_up(client)
    await launch_active_session(client, state, clock, auth=theirs)
    await run_for(state, clock, seconds=120)
    assert (await _transactions(client, mine))["total"] == 1


async def test_billing_needs_a_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(BALANCE), 401)
    assert_error(await client.get(TRANSACTIONS), 401)


async def test_charged_minutes_are_every_started_minute_after_each_pass(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, credit_usd="5")
    session_id = await launch_active_session(client, state, clock, auth=auth)
    for step, expected in ((1, 1), (59, 1), (1, 2), (600, 12)):
        await run_for(state, clock, seconds=step, step=step)
        body = await get_session(client, auth=auth, session_id=session_id)
        assert body["charged_minutes"] == expected, body


async def test_a_repeated_metering_pass_charges_nothing_more(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="5")
    await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=90)
    before = await _balance(client, auth)
    for _ in range(3):
        await state.jobs.meter()
    assert await _balance(client, auth) == before
    assert before["balance_micros"] == 5_000_000 - 2 * 150_000


async def test_cost_is_charged_minutes_times_the_locked_price(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="20")
    session_id = await launch_active_session(client, state, clock, auth=auth, tier="beast")
    await run_for(state, clock, seconds=181)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["charged_minutes"], body["cost_usd"]) == (4, "6.00")
    assert (await _balance(client, auth))["balance_usd"] == "14.00"


async def test_running_out_of_credit_stops_the_session_at_its_last_paid_minute(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=1, credit_usd="0.30")
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=185)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert body["status"] == "terminated"
    assert body["end_reason"] == "insufficient_credits"
    assert (body["charged_minutes"], body["active_seconds"], body["cost_usd"]) == (3, 180, "0.45")
    assert await _balance(client, auth) == {
        "balance_usd": "0.00",
        "balance_micros": 0,
        "free_minutes": 0,
        "included_minutes": 0,
    }


async def test_the_balance_never_goes_negative_even_after_a_long_gap(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="0.40")
    session_id = await launch_active_session(client, state, clock, auth=auth)
    clock.advance(3600)  # one pass an hour later: only what can be paid is charged
    await state.jobs.meter()
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["end_reason"]) == ("terminated", "insufficient_credits")
    assert (body["charged_minutes"], body["active_seconds"]) == (2, 120)
    assert (await _balance(client, auth))["balance_micros"] == 100_000


async def test_a_starved_session_frees_the_plan_slot_and_is_not_billed_later(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=1)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=600, step=30)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["charged_minutes"]) == ("terminated", 1)
    stop = await act(client, auth=auth, session_id=session_id, action="stop")
    assert stop.status_code == 200 and stop.json()["charged_minutes"] == 1
    response = await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=auth)
    assert_error(response, 402, "insufficient_credit")


async def test_two_sessions_sharing_the_credit_stop_together_at_zero(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(
        client, db, clock=clock, plan="starter", free_minutes=0, credit_usd="0.60"
    )
    ready = [await launch_ready_session(client, state, clock, auth=auth) for _ in range(2)]
    for session_id in ready:
        await act(client, auth=auth, session_id=session_id, action="start")
    await run_for(state, clock, seconds=300, step=10)
    bodies = [await get_session(client, auth=auth, session_id=s) for s in ready]
    assert [(b["status"], b["end_reason"]) for b in bodies] == [
        ("terminated", "insufficient_credits")
    ] * 2
    assert sum(b["charged_minutes"] for b in bodies) == 4
    assert (await _balance(client, auth))["balance_micros"] == 0
