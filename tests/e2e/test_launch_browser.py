"""The launch in a real browser: limits read as typed and never dropped, the recommended model
chosen and the wizard's buttons always in reach, one launch and one "Stop?" per click burst,
the plan and the money said at the first step, demo mode said on every page. Screenshots at
1,280 and 390 px go to SIZZLE_SCREENSHOTS (default `artifacts/screenshots/`)."""

# ruff: noqa: F811 - the fixtures `page` and `site` come from the journey module
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import GpuSession
from tests.e2e.test_browser_journey import CHROMIUM, page, playwright_api, site  # noqa: F401
from tests.e2e.test_money_browser import DESKTOP, PHONE, both_widths
from tests.helpers import PASSWORD, make_user

DEMO_SENTENCE = "no real GPU or model runs"


async def sign_in_as_new_user(
    page: playwright_api.Page, db: Database, clock: FakeClock, **money: object
) -> None:
    user = await make_user(db, now=clock.now(), **money)  # type: ignore[arg-type]
    await page.goto("/signin")
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()


async def sessions_made(db: Database) -> int:
    async with db.read() as tx:
        return int(await tx.scalar(select(func.count()).select_from(GpuSession)) or 0)


async def test_limits_are_read_as_typed_and_a_bad_one_never_reaches_launch(
    page: playwright_api.Page,
    db: Database,
    clock: FakeClock,
) -> None:
    expect = playwright_api.expect
    await sign_in_as_new_user(page, db, clock, credit_usd="10")
    await page.goto("/launch?step=options&tier=starter&model=llama3.1-8b")
    preview = page.locator("#limits-preview")
    await page.get_by_label("Spending cap").fill("2,50")
    await expect(preview).to_contain_text("pays for 16 minutes")  # as it is typed
    await page.get_by_label("Spending cap").fill("five dollars")
    await expect(preview).to_contain_text("is not an amount of money")
    await page.get_by_role("button", name="Next: confirm").click()
    await expect(page.locator("#spend_cap-problem")).to_contain_text("not an amount of money")
    await expect(page.get_by_role("button", name="Launch")).to_have_count(0)
    await page.set_viewport_size(DESKTOP)
    await both_widths(page, "30-launch-limits-refused")

    await page.get_by_label("Spending cap").fill("0.01")
    await expect(preview).to_contain_text("The smallest spending cap here is $0.15")
    await page.get_by_label("Spending cap").fill("$2.50")
    await page.get_by_role("button", name="Next: confirm").click()
    await expect(page.locator("#confirm-limits")).to_contain_text("Stops after 16 minutes")
    await both_widths(page, "31-launch-confirm-with-cap")
    await page.get_by_role("button", name="Launch").click()
    await expect(page).to_have_url(re.compile(r"/sessions/[0-9a-f]{32}$"))
    async with db.read() as tx:
        assert await tx.scalar(select(GpuSession.max_minutes)) == 16


async def test_the_model_step_recommends_and_its_buttons_stay_in_reach(
    page: playwright_api.Page,
    db: Database,
    clock: FakeClock,
) -> None:
    expect = playwright_api.expect
    await sign_in_as_new_user(page, db, clock)
    await page.goto("/launch")
    await page.locator("label.choice", has_text="Starter").click()
    await page.get_by_role("button", name="Next: choose a model").click()
    best = page.locator("label.choice", has_text="Best pick")
    await expect(best.locator("input")).to_be_checked()
    for size in (PHONE, DESKTOP):
        await page.set_viewport_size(size)
        await expect(page.get_by_role("button", name="Next: limits")).to_be_in_viewport()
    await both_widths(page, "32-launch-model-recommended")
    await page.get_by_role("link", name="Coding").click()
    await expect(page.locator("label.choice", has_text="Best pick")).to_contain_text(
        "Made for code"
    )
    await page.set_viewport_size(PHONE)
    await page.mouse.wheel(0, 3000)  # far down the library, on a phone
    await expect(page.get_by_role("button", name="Next: limits")).to_be_in_viewport()
    await page.get_by_role("button", name="Next: limits").click()
    await expect(page.get_by_label("Time limit")).to_be_visible()


async def test_a_double_clicked_launch_makes_one_session_and_shows_it(
    page: playwright_api.Page,
    db: Database,
    clock: FakeClock,
) -> None:
    expect = playwright_api.expect
    await sign_in_as_new_user(page, db, clock)  # the free plan: one session at a time
    await page.goto("/launch?step=confirm&tier=starter&model=llama3.1-8b")
    await page.get_by_role("button", name="Launch").dblclick()
    await expect(page).to_have_url(re.compile(r"/sessions/[0-9a-f]{32}$"))
    await expect(page.locator("#status-words")).to_have_text("Finding a GPU for you…")
    assert await sessions_made(db) == 1

    asked: list[str] = []

    async def answer(dialog: playwright_api.Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", answer)
    await page.get_by_role("button", name="Stop").dblclick()
    await expect(page.locator("#summary")).to_be_visible()
    assert len(asked) == 1, asked


async def test_without_javascript_a_launch_sent_twice_still_leads_to_its_session(
    site: str,
    db: Database,
    clock: FakeClock,
) -> None:
    expect = playwright_api.expect
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = await browser.new_context(base_url=site, java_script_enabled=False)
        tab = await context.new_page()
        await sign_in_as_new_user(tab, db, clock)
        await tab.goto("/launch?step=confirm&tier=starter")
        await tab.get_by_role("button", name="Launch").dblclick()  # two POSTs of one form
        await expect(tab).to_have_url(re.compile(r"/sessions/[0-9a-f]{32}$"))
        await tab.go_back()  # the confirm page again, and Launch once more
        await tab.get_by_role("button", name="Launch").click()
        await expect(tab).to_have_url(re.compile(r"/sessions/[0-9a-f]{32}$"))
        await browser.close()
    assert await sessions_made(db) == 1


async def test_no_money_and_plans_are_said_at_the_first_step(
    page: playwright_api.Page,
    db: Database,
    clock: FakeClock,
) -> None:
    expect = playwright_api.expect
    await sign_in_as_new_user(page, db, clock, free_minutes=0)
    await page.goto("/launch")
    await expect(page.locator("#no-money")).to_contain_text("no free minutes and no credit left")
    await expect(page.get_by_role("button", name="Next: choose a model")).to_have_count(0)
    ultra = page.locator(".tier-slot", has_text="Ultra")
    await expect(ultra).to_contain_text("Not in your Free plan")
    await both_widths(page, "33-launch-no-money")
    await ultra.get_by_role("link", name="See plans and how to change yours").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Plans")
    await both_widths(page, "34-plans")


@pytest.mark.parametrize("path", ["/", "/launch", "/launch?step=confirm&tier=starter"])
async def test_demo_mode_is_on_every_page_where_people_decide(
    page: playwright_api.Page,
    db: Database,
    clock: FakeClock,
    path: str,
) -> None:
    expect = playwright_api.expect
    await sign_in_as_new_user(page, db, clock)
    await page.goto(path)
    await expect(page.locator(".badge.demo")).to_be_visible()
    await expect(page.locator("#demo-note")).to_contain_text(DEMO_SENTENCE)
    name = {"/": "35-demo-landing", "/launch": "36-demo-wizard"}.get(path, "37-demo-confirm")
    await both_widths(page, name)
    if path.endswith("confirm&tier=starter"):
        await page.get_by_role("button", name="Launch").click()
        await expect(page.locator(".badge.demo")).to_be_visible()
        await expect(page.locator("#demo-note")).to_contain_text(DEMO_SENTENCE)
        await both_widths(page, "38-demo-live")
