"""Limits on POST /api/v1/sessions: the API refuses what the launch page refuses, in the same
sentences, and a cap becomes the minutes it pays for."""

from __future__ import annotations

import httpx
import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from tests.helpers import assert_error, signed_in_user

SESSIONS = "/api/v1/sessions"


@pytest.mark.parametrize(
    ("cap", "minutes"),
    [
        ("2.50", 16),
        ("2,50", 16),
        ("$2.50", 16),
        ("0.15", 1),
        ("1.234,50", 8230),
        ("US$ 1,234.50", 8230),
    ],
)
async def test_a_spending_cap_in_a_persons_own_style_becomes_the_minutes_it_pays_for(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, cap: str, minutes: int
) -> None:
    auth = await signed_in_user(client, db, clock=clock, credit_usd="10")
    response = await client.post(
        SESSIONS, json={"tier": "starter", "spend_cap_usd": cap}, headers=auth
    )
    assert response.status_code == 201, response.text
    assert response.json()["max_minutes"] == minutes


@pytest.mark.parametrize(
    ("cap", "words"),
    [
        ("five dollars", "not an amount of money"),
        ("2.5.0", "not an amount of money"),
        ("-3", "not an amount of money"),
        ("1,000", "could mean 1000 dollars or 1.00 dollars"),
        ("0.01", "smallest spending cap here is $0.15"),
        ("0", "smallest spending cap here is $0.15"),
        ("0.155", "not an amount of money"),
        ("100001", "largest spending cap is $100,000"),
    ],
)
async def test_a_cap_the_page_would_refuse_is_a_422_that_says_why(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, cap: str, words: str
) -> None:
    auth = await signed_in_user(client, db, clock=clock, credit_usd="10")
    response = await client.post(
        SESSIONS, json={"tier": "starter", "spend_cap_usd": cap}, headers=auth
    )
    error = assert_error(response, 422, "invalid_limit")
    assert words in error["message"]
    listed = await client.get(SESSIONS, headers=auth)
    assert listed.json()["total"] == 0  # nothing was made without the cap


@pytest.mark.parametrize("minutes", [0, -5, 43_201])
async def test_a_time_limit_out_of_range_is_a_422_that_says_the_range(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, minutes: int
) -> None:
    auth = await signed_in_user(client, db, clock=clock)
    response = await client.post(
        SESSIONS, json={"tier": "starter", "max_minutes": minutes}, headers=auth
    )
    error = assert_error(response, 422, "invalid_limit")
    assert "whole number of minutes, from 1 to 43,200" in error["message"]


async def test_the_tighter_of_time_limit_and_cap_wins(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock, credit_usd="10")
    response = await client.post(
        SESSIONS,
        json={"tier": "pro", "max_minutes": 30, "spend_cap_usd": "1.00"},  # $0.45: 2 minutes
        headers=auth,
    )
    assert response.status_code == 201, response.text
    assert response.json()["max_minutes"] == 2


async def test_a_cap_given_as_a_json_number_is_refused_money_is_text(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock, credit_usd="10")
    response = await client.post(
        SESSIONS, json={"tier": "starter", "spend_cap_usd": 2.5}, headers=auth
    )
    assert_error(response, 422)
