"""A property over random sessions (free minutes, Sizzle Lab minutes, credit, tier, run time,
stopped or still running): what the API, the live page or summary, the history and the CLI
show as charged is the ledger's credit charges for the session, to the cent; free and Lab
minutes are shown as minutes, never dollars."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.domain.charges import dollars
from sizzle.domain.tiers import TIERS
from sizzle.services import accounts, ledger
from sizzle.state import AppState
from tests.api.test_session_charges import credit_charged
from tests.client.support import Sizzle, logged_in, parsed
from tests.helpers import PASSWORD, launch_active_session, run_for
from tests.web.pages import post_form

SESSIONS = st.fixed_dictionaries(
    {
        "free": st.integers(0, 4),
        "lab": st.integers(0, 4),
        "credit_cents": st.sampled_from([0, 14, 15, 45, 100, 160, 450, 1000]),
        "tier": st.sampled_from(["starter", "pro", "beast"]),
        "seconds": st.lists(st.integers(1, 150), min_size=1, max_size=3),
        "stop": st.booleans(),
    }
)


@pytest.fixture
async def pages(state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as client:
        yield client


def shown(page: httpx.Response, pattern: str) -> str:
    found = re.search(pattern, page.text, re.S)
    assert found, pattern
    return found.group(1).strip()


@settings(
    max_examples=12,
    deadline=None,
    # Each example makes its own user and session in the test's database and app.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(example=SESSIONS)
async def test_every_place_shows_the_ledgers_credit_charges(
    example: dict, sizzle: Sizzle, pages: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    tier = TIERS[example["tier"]]
    lab = example["lab"] if state.settings.lab.covers(tier.name) else 0
    assume(example["free"] + lab + example["credit_cents"] * 10_000 // tier.price_micros_per_minute)
    credit = f"{example['credit_cents'] / 100:.2f}"
    account = await logged_in(sizzle, clock, state, credit_usd=credit, free_minutes=example["free"])
    async with state.db.transaction() as tx:
        user = await accounts.get_user_by_email(tx, account.email)
        if example["lab"]:
            await ledger.grant_included_minutes(
                tx, user.id, example["lab"], key=f"test:{user.id}", now=clock.now(), memo="Lab"
            )
    session_id = await launch_active_session(
        sizzle.api, state, clock, auth=account.headers, tier=example["tier"]
    )
    for seconds in example["seconds"]:
        await run_for(state, clock, seconds=seconds, step=seconds)
    if example["stop"]:
        await sizzle.api.post(f"/api/v1/sessions/{session_id}/stop", headers=account.headers)

    charged = await credit_charged(state.db, session_id)
    api = (await sizzle.api.get(f"/api/v1/sessions/{session_id}", headers=account.headers)).json()
    assert api["credit_charged_micros"] == charged
    assert f"{dollars(charged)} charged" in api["charges_text"]
    assert api["free_minutes_used"] <= example["free"]
    assert api["plan_minutes_used"] <= example["lab"]

    pages.cookies.clear()
    signed_in = await post_form(pages, "/signin", {"email": account.email, "password": PASSWORD})
    assert signed_in.status_code == 303
    page = await pages.get(f"/sessions/{session_id}")
    if api["status"] in ("terminated", "failed"):
        figure = shown(page, r'Charged to credit</div><div class="value">([^<]*)<')
    else:
        figure = shown(page, r'id="charged">([^<]*)<')
    assert figure == dollars(charged)
    history = await pages.get("/sessions")
    assert shown(history, r'id="total-charged">([^<]*)<') == dollars(charged)

    (row,) = parsed(await sizzle("ps", "--all", "--json", SIZZLE_API_KEY=account.key))
    assert row["credit_charged_micros"] == charged
    table = await sizzle("ps", "--all", SIZZLE_API_KEY=account.key)
    assert dollars(charged) in table.stdout.splitlines()[1]
    if api["free_minutes_used"] == api["plan_minutes_used"] == 0:
        return
    assert "free min" in table.stdout or "Lab min" in table.stdout  # minutes, not dollars
