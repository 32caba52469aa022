""" "Tell me when it's free" in a real browser: no GPU of the tier is free, one click waits for
one with the choices kept, My sessions shows the wait in line, and Cancel ends it. Screenshots
at 1,280 and 390 px go to SIZZLE_SCREENSHOTS (default `artifacts/screenshots/`)."""

# ruff: noqa: F811 - the fixtures `page` and `site` come from the journey module
from __future__ import annotations

import pytest
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import QueuedLaunch
from sizzle.settings import Settings
from tests.e2e.test_browser_journey import CHROMIUM, page, playwright_api, site  # noqa: F401
from tests.e2e.test_launch_browser import sign_in_as_new_user
from tests.e2e.test_money_browser import both_widths


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No demo GPU free at all."""
    return settings.model_copy(update={"demo_capacity": 0})


async def test_a_full_tier_is_waited_for_in_one_click_and_cancelled_from_my_sessions(
    page: playwright_api.Page, db: Database, clock: FakeClock
) -> None:
    expect = playwright_api.expect
    await sign_in_as_new_user(page, db, clock)
    await page.goto("/launch?step=confirm&tier=pro&model=llama3.1-8b&max_minutes=45")
    await page.get_by_role("button", name="Launch").click()
    await expect(page.get_by_role("alert")).to_contain_text("No pro GPU is free right now")
    await both_widths(page, "60-launch-no-capacity-offers-to-wait")

    await page.get_by_role("button", name="Tell me when it's free").click()
    await expect(page.get_by_role("status")).to_contain_text("as soon as a GPU is free")
    waiting = page.locator("#waiting + .table-wrap")
    await expect(waiting).to_contain_text("Pro")
    await expect(waiting).to_contain_text("Next")
    await both_widths(page, "61-sessions-waiting-for-a-gpu")
    async with db.read() as tx:
        entry = await tx.scalar(select(QueuedLaunch))
    assert entry is not None and (entry.tier, entry.max_minutes) == ("pro", 45)

    await page.get_by_role("button", name="Cancel waiting for a pro GPU").click()
    await expect(page.get_by_role("heading", name="Waiting for a GPU")).to_have_count(0)
    async with db.read() as tx:
        assert await tx.scalar(select(QueuedLaunch.status)) == "cancelled"
