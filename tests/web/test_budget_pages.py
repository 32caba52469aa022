"""The monthly budget on the pages: the account page's form (the user's own number style, empty
clears, a refusal said in a sentence), the one line on the billing and live pages, the wizard's
refusal before any step once reached, and the operator's count of budget stops."""

from __future__ import annotations

import html
from dataclasses import dataclass

import httpx
import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import User
from sizzle.services import budget
from sizzle.state import AppState
from tests.helpers import launch_active_session, log_in, run_for
from tests.web.pages import post_form, sign_in


async def _save(browser: httpx.AsyncClient, typed: str) -> httpx.Response:
    return await post_form(browser, "/account/budget", {"monthly_budget": typed}, page="/account")


async def _budget_of(db: Database, user: User, clock: FakeClock) -> int | None:
    async with db.read() as tx:
        return (await budget.month_state(tx, user.id, now=clock.now())).budget_micros


async def test_the_account_page_sets_a_budget_in_the_users_own_style(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    page = await _save(browser, "12,50")
    assert page.status_code == 200
    assert "Monthly budget saved." in page.text
    assert 'value="12.50"' in page.text
    text = html.unescape(page.text)
    assert "$0.00 of your $12.50 monthly budget spent in March 2026 (UTC) · $12.50 left" in text
    assert "this one ends 1 April 2026, 00:00 UTC" in text
    assert await _budget_of(db, user, clock) == 12_500_000


async def test_an_empty_budget_removes_it(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    await _save(browser, "$30")
    page = await _save(browser, "")
    assert page.status_code == 200
    assert "Monthly budget removed." in page.text
    assert "no monthly budget set" in page.text
    assert await _budget_of(db, user, clock) is None


async def test_a_budget_that_cannot_be_used_is_refused_and_kept_as_typed(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    await _save(browser, "20")
    page = await _save(browser, "2.500")
    assert page.status_code == 422
    assert 'id="budget-error"' in page.text
    assert "could mean 2500 dollars or 2.50 dollars" in page.text
    assert 'value="2.500"' in page.text
    assert await _budget_of(db, user, clock) == 20_000_000  # unchanged


@dataclass
class Renting:
    """What the page tests drive: a signed-in browser and the same user's API client."""

    browser: httpx.AsyncClient
    client: httpx.AsyncClient
    state: AppState
    db: Database
    clock: FakeClock

    async def run_under_budget(self, typed: str, *, seconds: int) -> str:
        """A new user with $10 and no free minutes sets the budget on the account page, runs
        a starter session for `seconds` with metering on; the session's id."""
        user = await sign_in(
            self.browser, self.db, clock=self.clock, credit_usd="10", free_minutes=0
        )
        await _save(self.browser, typed)
        auth = await log_in(self.client, email=user.email)
        session_id = await launch_active_session(self.client, self.state, self.clock, auth=auth)
        await run_for(self.state, self.clock, seconds=seconds)
        return session_id


@pytest.fixture
def renting(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    state: AppState,
    db: Database,
    clock: FakeClock,
) -> Renting:
    return Renting(browser, client, state, db, clock)


async def test_billing_and_the_live_page_show_the_budget_and_its_spend(renting: Renting) -> None:
    session_id = await renting.run_under_budget("3", seconds=100)  # 2 minutes at $0.15

    line = "$0.30 of your $3.00 monthly budget spent in March 2026 (UTC) · $2.70 left"
    for path in ("/billing", f"/sessions/{session_id}"):
        page = await renting.browser.get(path)
        assert page.status_code == 200
        assert line in html.unescape(page.text), path


async def test_once_reached_the_wizard_says_so_before_any_step(renting: Renting) -> None:
    session_id = await renting.run_under_budget("0.30", seconds=150)

    live = html.unescape((await renting.browser.get(f"/sessions/{session_id}")).text)
    assert "Your monthly budget was reached." in live
    wizard = await renting.browser.get("/launch")
    assert wizard.status_code == 200
    text = html.unescape(wizard.text)
    assert 'id="budget-reached"' in text
    assert "You have reached your monthly budget of $0.30 for March 2026" in text
    assert "Next: choose a model" not in text


async def test_the_operator_overview_counts_todays_budget_stops(renting: Renting) -> None:
    await renting.run_under_budget("0.15", seconds=90)

    renting.browser.cookies.clear()
    await sign_in(renting.browser, renting.db, clock=renting.clock, is_admin=True)
    page = await renting.browser.get("/admin")
    assert page.status_code == 200
    assert '<div class="value" id="budget-stops">1</div>' in page.text
