"""Money in a real browser: a session paid by free minutes, one by free minutes and credit,
and one by credit, on the live page, the summary and the history, told one way
(domain/charges.py); the live figures follow each event and show a started minute at once.
Screenshots at 1,280 and 390 px go to SIZZLE_SCREENSHOTS (default `artifacts/screenshots/`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.state import AppState
from tests.e2e.browser import DESKTOP, PHONE, both_widths
from tests.e2e.test_browser_journey import page, playwright_api, site  # noqa: F401
from tests.helpers import PASSWORD, act, launch_active_session, log_in, make_user, run_for


@pytest.fixture
async def api(site: str) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with httpx.AsyncClient(base_url=site, timeout=10) as client:
        yield client


async def signed_in_session(
    page: playwright_api.Page,  # noqa: F811
    api: httpx.AsyncClient,
    db: Database,
    state: AppState,
    clock: FakeClock,
    **money: object,
) -> tuple[str, dict[str, str]]:
    """A user with the money given, signed in on the page, with an active starter session."""
    user = await make_user(db, now=clock.now(), **money)  # type: ignore[arg-type]
    await page.goto("/signin")
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
    auth = await log_in(api, email=user.email)
    return await launch_active_session(api, state, clock, auth=auth), auth


async def stop_on_the_page(page: playwright_api.Page) -> None:  # noqa: F811
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Stop").click()
    await playwright_api.expect(page.locator("#summary")).to_be_visible()


async def test_a_session_free_minutes_paid_is_never_shown_as_dollars(
    page: playwright_api.Page,  # noqa: F811
    api: httpx.AsyncClient,
    db: Database,
    state: AppState,
    clock: FakeClock,
) -> None:
    expect = playwright_api.expect
    await page.set_viewport_size(DESKTOP)
    session_id, _ = await signed_in_session(page, api, db, state, clock, free_minutes=5)
    await run_for(state, clock, seconds=1, step=1)
    await page.goto(f"/sessions/{session_id}")
    clock.advance(60)
    await state.jobs.meter()  # minute 2: the page hears it from its events
    await expect(page.locator("#minutes")).to_have_text("2")
    await expect(page.locator("#charged")).to_have_text("$0.00")
    await expect(page.locator("#charges-text")).to_have_text("2 free minutes used · $0.00 charged")
    await expect(page.locator("#free-left")).to_have_text("3 free minutes left")
    await expect(page.locator("#live")).not_to_contain_text("$0.30")
    await both_widths(page, "20-money-free-live")

    await stop_on_the_page(page)
    summary = page.locator("#summary")
    await expect(summary).to_contain_text("2 free minutes used · $0.00 charged")
    await expect(summary).not_to_contain_text("$0.30")
    await both_widths(page, "21-money-free-summary")
    await page.goto("/sessions")
    await expect(page.locator("#total-charged")).to_have_text("$0.00")
    await expect(page.locator("table")).to_contain_text("2 free min")
    await both_widths(page, "22-money-free-history")
    await page.set_viewport_size(PHONE)  # on a phone no figure scrolls out of sight
    for label in ("Active time", "Minutes", "Charged"):
        await expect(page.locator(f'td[data-label="{label}"]').first).to_be_in_viewport()


async def test_free_then_credit_and_the_low_credit_warning_follow_each_event(
    page: playwright_api.Page,  # noqa: F811
    api: httpx.AsyncClient,
    db: Database,
    state: AppState,
    clock: FakeClock,
) -> None:
    expect = playwright_api.expect
    await page.set_viewport_size(DESKTOP)
    session_id, _ = await signed_in_session(
        page, api, db, state, clock, free_minutes=1, credit_usd="1"
    )
    await run_for(state, clock, seconds=61, step=61)  # minute 1 free, minute 2 from credit
    await page.goto(f"/sessions/{session_id}")
    await expect(page.locator("#credit")).to_have_text("$0.85")
    await expect(page.locator("#minutes-left")).to_have_text("5")
    await expect(page.locator("#low-credit")).to_be_hidden()
    clock.advance(60)
    await state.jobs.meter()  # minute 3 from credit: $0.70 left, 4 minutes: low
    await expect(page.locator("#credit")).to_have_text("$0.70")
    await expect(page.locator("#minutes-left")).to_have_text("4")
    await expect(page.locator("#low-credit")).to_be_visible()  # without reloading the page
    await expect(page.locator("#low-credit")).to_contain_text("running low")
    await expect(page.locator("#charges-text")).to_have_text(
        "1 free minute used · $0.30 charged for 2 minutes"
    )
    await both_widths(page, "23-money-mixed-live")

    await stop_on_the_page(page)
    await expect(page.locator("#summary")).to_contain_text(
        "1 free minute used · $0.30 charged for 2 minutes"
    )
    await both_widths(page, "24-money-mixed-summary")
    await page.goto("/sessions")
    await expect(page.locator("#total-charged")).to_have_text("$0.30")
    await both_widths(page, "25-money-mixed-history")


async def test_a_started_minute_shows_at_once_before_metering_charges_it(
    page: playwright_api.Page,  # noqa: F811
    api: httpx.AsyncClient,
    db: Database,
    state: AppState,
    clock: FakeClock,
) -> None:
    expect = playwright_api.expect
    await page.set_viewport_size(DESKTOP)
    session_id, auth = await signed_in_session(
        page, api, db, state, clock, free_minutes=0, credit_usd="5"
    )
    await run_for(state, clock, seconds=30, step=30)
    await page.goto(f"/sessions/{session_id}")
    await expect(page.locator("#minutes")).to_have_text("1")
    await expect(page.locator("#charged")).to_have_text("$0.15")
    clock.advance(31)  # minute 2 has started; no metering pass has charged it yet
    await page.reload()
    await expect(page.locator("#minutes")).to_have_text("2")  # the page counts it at once
    await expect(page.locator("#charged")).to_have_text("$0.30")
    await expect(page.locator("#credit")).to_have_text("$4.70")
    await expect(page.locator("#charges-text")).to_have_text("$0.30 charged for 2 minutes")
    await both_widths(page, "26-money-credit-live")

    await act(api, auth=auth, session_id=session_id, action="stop")
    # the page hears the stop from its events and reloads itself into the summary
    await expect(page.locator("#summary")).to_contain_text("$0.30 charged for 2 minutes")
    await both_widths(page, "27-money-credit-summary")
    await page.goto("/sessions")
    await expect(page.locator("#total-charged")).to_have_text("$0.30")
    await both_widths(page, "28-money-credit-history")
