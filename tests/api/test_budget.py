"""The monthly budget through the API: set in the user's number style, cleared, refused with a
sentence; a hard cap that metering enforces at the minute, with warnings on the way, a refused
launch once reached, and a fresh start with the next month (UTC). Runs on SQLite, and on
PostgreSQL with SIZZLE_TEST_DATABASE_URL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import Notification
from sizzle.state import AppState
from tests.helpers import (
    act,
    assert_error,
    create_session,
    get_session,
    launch_active_session,
    launch_ready_session,
    me,
    run_for,
    signed_in_user,
)

BUDGET = "/api/v1/account/budget"


async def _set(client: httpx.AsyncClient, auth: dict[str, str], value: Any) -> httpx.Response:
    return await client.put(BUDGET, json={"monthly_budget_usd": value}, headers=auth)


async def _budget(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    response = await client.get(BUDGET, headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


async def _notes(db: Database) -> list[tuple[str, str]]:
    async with db.read() as tx:
        rows = await tx.scalars(select(Notification).order_by(Notification.created_at))
        return [(n.kind, n.key.rsplit(":", 1)[1]) for n in rows if n.key.startswith("budget:")]


async def test_no_budget_shows_this_months_spend_and_when_it_resets(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock)
    assert await _budget(client, auth) == {
        "monthly_budget_usd": None,
        "monthly_budget_micros": None,
        "month": "2026-03",
        "month_started_at": "2026-03-01T00:00:00Z",
        "resets_at": "2026-04-01T00:00:00Z",
        "spent_usd": "0.00",
        "spent_micros": 0,
        "left_usd": None,
        "left_micros": None,
        "reached": False,
        "text": "$0.00 of GPU time paid with credit in March 2026 (UTC) · no monthly budget set",
    }


@pytest.mark.parametrize(
    ("typed", "micros"),
    [("2.50", 2_500_000), ("2,50", 2_500_000), ("$2.50", 2_500_000), ("25", 25_000_000)],
)
async def test_a_budget_is_read_in_the_users_number_style(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, typed: str, micros: int
) -> None:
    auth = await signed_in_user(client, db, clock=clock)
    response = await _set(client, auth, typed)
    assert response.status_code == 200, response.text
    assert response.json()["monthly_budget_micros"] == micros
    assert (await _budget(client, auth))["left_micros"] == micros


@pytest.mark.parametrize("cleared", [None, "", "  "])
async def test_null_or_empty_clears_the_budget(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, cleared: str | None
) -> None:
    auth = await signed_in_user(client, db, clock=clock)
    assert (await _set(client, auth, "10")).status_code == 200
    response = await _set(client, auth, cleared)
    assert response.status_code == 200, response.text
    assert (await _budget(client, auth))["monthly_budget_usd"] is None


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("ten dollars", "is not an amount of money"),
        ("0", "more than $0"),
        ("1,000", "could mean 1000 dollars or 1.00 dollars"),
        ("0.005", "is not an amount of money"),
        ("1000000", "largest monthly budget is $100,000"),
        ("-5", "is not an amount of money"),
    ],
)
async def test_a_budget_that_cannot_be_used_is_a_422_saying_what_to_enter(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, typed: str, says: str
) -> None:
    auth = await signed_in_user(client, db, clock=clock)
    assert (await _set(client, auth, "7")).status_code == 200
    error = assert_error(await _set(client, auth, typed), 422, "invalid_budget")
    assert says in error["message"]
    assert (await _budget(client, auth))["monthly_budget_usd"] == "7.00"  # unchanged


async def test_a_budget_that_is_not_text_is_a_422(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock)
    assert_error(await _set(client, auth, 5), 422)
    assert_error(await client.put(BUDGET, json={}, headers=auth), 422)


async def test_metering_stops_at_the_last_minute_the_budget_pays_billed_to_its_paid_time(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    # $1.00 at $0.15 a minute pays 6 minutes ($0.90); the 7th would be $1.05
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="10")
    assert (await _set(client, auth, "1")).status_code == 200
    session_id = await launch_active_session(client, state, clock, auth=auth)

    await run_for(state, clock, seconds=10 * 60)

    session = await get_session(client, auth=auth, session_id=session_id)
    assert (session["status"], session["end_reason"]) == ("terminated", "budget")
    assert (session["charged_minutes"], session["active_seconds"]) == (6, 360)
    assert session["cost_usd"] == "0.90"
    assert (await me(client, auth=auth))["balance_usd"] == "9.10"
    spent = await _budget(client, auth)
    assert (spent["spent_usd"], spent["left_usd"], spent["reached"]) == ("0.90", "0.00", True)
    assert await _notes(db) == [
        ("budget_warning", "75"),
        ("budget_warning", "90"),
        ("budget_reached", "100"),
    ]


async def test_free_minutes_are_not_money_and_do_not_count(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=3, credit_usd="10")
    assert (await _set(client, auth, "0.30")).status_code == 200
    session_id = await launch_active_session(client, state, clock, auth=auth)

    await run_for(state, clock, seconds=8 * 60)

    session = await get_session(client, auth=auth, session_id=session_id)
    assert (session["end_reason"], session["charged_minutes"]) == ("budget", 5)
    assert session["free_minutes_used"] == 3
    assert (await _budget(client, auth))["spent_usd"] == "0.30"


async def test_once_reached_a_launch_is_refused_until_the_budget_is_raised(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="10")
    assert (await _set(client, auth, "0.45")).status_code == 200
    await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=5 * 60)

    refused = await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=auth)
    error = assert_error(refused, 409, "budget_reached")
    assert "monthly budget of $0.45" in error["message"]
    assert "account page" in error["message"]
    assert "1 April 2026, 00:00 UTC" in error["message"]
    assert error["details"]["resets_at"] == "2026-04-01T00:00:00+00:00"

    assert (await _set(client, auth, "0.60")).status_code == 200
    assert (await _budget(client, auth))["reached"] is False
    await create_session(client, auth=auth)


async def test_a_launch_whose_first_minute_the_budget_cannot_pay_is_refused(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="10")
    assert (await _set(client, auth, "0.20")).status_code == 200
    refused = await client.post("/api/v1/sessions", json={"tier": "pro"}, headers=auth)
    error = assert_error(refused, 409, "budget_reached")
    assert "costs $0.45 a minute and only $0.20" in error["message"]
    await create_session(client, auth=auth, tier="starter")  # $0.15 fits


async def test_reaching_the_budget_stops_every_running_session_of_the_user(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(
        client, db, clock=clock, plan="starter", free_minutes=0, credit_usd="10"
    )
    assert (await _set(client, auth, "1.50")).status_code == 200
    cheap = await launch_active_session(client, state, clock, auth=auth)
    dear = await launch_active_session(client, state, clock, auth=auth, tier="pro")

    await run_for(state, clock, seconds=4 * 60)

    stopped = [await get_session(client, auth=auth, session_id=s) for s in (cheap, dear)]
    assert [(s["status"], s["end_reason"]) for s in stopped] == [("terminated", "budget")] * 2
    spent = sum(int(s["credit_charged_micros"]) for s in stopped)
    assert spent <= 1_500_000
    assert (await _budget(client, auth))["spent_micros"] == spent
    for session in stopped:  # each billed to what it was charged, nothing unpaid
        assert session["active_seconds"] <= session["charged_minutes"] * 60


async def test_lowering_the_budget_below_the_spend_stops_the_running_session(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="10")
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=150)  # 3 minutes charged: $0.45
    assert (await _set(client, auth, "0.40")).status_code == 200
    await run_for(state, clock, seconds=5)
    session = await get_session(client, auth=auth, session_id=session_id)
    assert (session["status"], session["end_reason"]) == ("terminated", "budget")
    assert session["charged_minutes"] == 3


async def test_the_next_month_starts_from_zero(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    clock.advance((datetime(2026, 3, 31, 23, 50, tzinfo=UTC) - clock.now()).total_seconds())
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="10")
    assert (await _set(client, auth, "0.15")).status_code == 200
    ready = await launch_ready_session(client, state, clock, auth=auth)
    started = await act(client, auth=auth, session_id=ready, action="start")
    assert started.status_code == 200
    await run_for(state, clock, seconds=90)
    assert (await _budget(client, auth))["reached"] is True
    refused = await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=auth)
    assert_error(refused, 409, "budget_reached")

    clock.advance((datetime(2026, 4, 1, tzinfo=UTC) - clock.now()).total_seconds())
    fresh = await _budget(client, auth)
    assert (fresh["month"], fresh["spent_usd"], fresh["reached"]) == ("2026-04", "0.00", False)
    await create_session(client, auth=auth)
