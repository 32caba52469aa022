"""Times on the pages are the reader's own: the server writes UTC into `<time>` elements and the
page shows them in the browser's time zone, naming it, with the UTC time as the tooltip."""

from __future__ import annotations

import httpx

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.state import AppState
from tests.e2e.browser import CHROMIUM, needs_chromium, playwright_api
from tests.e2e.test_browser_journey import site  # noqa: F401
from tests.helpers import PASSWORD, launch_active_session, log_in, make_user

pytestmark = needs_chromium


async def test_a_reader_in_new_york_sees_new_york_time(
    site: str,  # noqa: F811
    db: Database,
    state: AppState,
    clock: FakeClock,
) -> None:
    user = await make_user(db, now=clock.now())  # the fake clock: 2026-03-01 12:00 UTC
    async with httpx.AsyncClient(base_url=site, timeout=10) as api:
        await launch_active_session(api, state, clock, auth=await log_in(api, email=user.email))
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        context = await browser.new_context(
            base_url=site, timezone_id="America/New_York", locale="en-US"
        )
        page = await context.new_page()
        await page.goto("/signin")
        await page.get_by_label("Email").fill(user.email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await page.goto("/sessions")
        started = page.locator('td[data-label="Started"] time').first
        await playwright_api.expect(started).to_contain_text("7:00")
        await playwright_api.expect(started).to_contain_text("EST")
        assert await started.get_attribute("title") == "2026-03-01 12:00 UTC"
        assert await started.get_attribute("datetime") == "2026-03-01T12:00:00Z"
        await browser.close()
