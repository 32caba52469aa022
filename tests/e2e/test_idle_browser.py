"""Idle auto-stop in a real browser (Debian's chromium, Playwright, Sizzle on loopback HTTP):
two minutes before a running GPU nobody uses is paused, its live page counts down with "Keep
it running"; pressing it hides the countdown without reloading the page; left alone, the page
turns to "paused" and says why, and the inbox in the header tells the same, newest first.
Server time is the test's fake clock."""

from __future__ import annotations

import re

from sizzle.api.app import create_app
from sizzle.clock import FakeClock, to_ms
from sizzle.db.database import Database
from sizzle.db.models import GpuSession
from sizzle.state import AppState
from tests.e2e.browser import chromium_tab, needs_chromium, playwright_api, shot, sign_in_tab
from tests.helpers import PASSWORD, make_user, serve_here

pytestmark = needs_chromium
MINUTE = 60


async def test_the_idle_countdown_appears_and_keep_it_running_works(
    state: AppState, db: Database, clock: FakeClock
) -> None:
    expect = playwright_api.expect
    user = await make_user(db, now=clock.now(), credit_usd="5")
    async with (
        serve_here(create_app(state=state, run_jobs=False)) as site,
        chromium_tab(site) as page,
    ):
        await sign_in_tab(page, user.email, PASSWORD)
        await page.goto("/launch?step=options&tier=starter&model=none")
        await expect(page.get_by_label("15 minutes")).to_be_checked()
        await shot(page, "idle-01-limits-step")
        await page.get_by_role("button", name="Next: confirm").click()
        await expect(page.locator("#confirm-idle")).to_contain_text("after 15 minutes")
        await page.get_by_role("button", name="Launch").click()
        await state.jobs.run_once()
        clock.advance(state.settings.demo_provision_seconds)
        await state.jobs.run_once()
        await expect(page.locator("#status-words")).to_contain_text("ready")
        await page.get_by_role("button", name="Start").click()
        await expect(page.locator("#status-words")).to_contain_text("running")
        warning = page.locator("#idle-warning")
        await expect(warning).to_be_hidden()  # a whole limit away: no countdown yet

        clock.advance(13 * MINUTE + 30)  # nobody chats, nothing else uses it
        await state.jobs.housekeep()
        await page.reload()
        await expect(warning).to_be_visible()
        await expect(page.locator("#idle-countdown")).to_contain_text("1 min")
        await shot(page, "idle-02-countdown")
        await page.evaluate("window.notReloaded = true")  # gone if the page were reloaded
        await page.get_by_role("button", name="Keep it running").click()
        await expect(warning).to_be_hidden()
        assert await page.evaluate("window.notReloaded === true")
        session_id = page.url.rstrip("/").rsplit("/", 1)[-1]
        async with db.read() as tx:
            kept = await tx.get(GpuSession, session_id)
        assert kept is not None and kept.last_activity_ms == to_ms(clock.now())
        await shot(page, "idle-03-kept")

        clock.advance(15 * MINUTE)  # a whole limit from the press, still unused
        await state.jobs.housekeep()
        await expect(page.locator("#status-words")).to_contain_text("Paused", timeout=20_000)
        await expect(page.locator("#paused-idle")).to_contain_text("nobody used it for 15 minutes")
        await shot(page, "idle-04-paused")

        await page.reload()  # the bell's count comes with each page
        bell = page.locator("#notifications-bell")
        unread = re.compile(r"^Notifications, \d+ unread$")
        await expect(bell).to_have_attribute("aria-label", unread)
        await bell.click()
        told = page.locator("#inbox > li")
        await expect(told.first).to_contain_text("was paused because nobody used it")
        await expect(told.first).to_contain_text("it costs nothing now")
        await expect(told.filter(has_text="pauses in 2 minutes")).to_have_count(1)
        await shot(page, "idle-05-inbox")
