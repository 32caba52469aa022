"""In a real browser (Debian's chromium, Playwright): the legal pages, accepting them at sign-up
and again when they change, free minutes that come with the confirmed address, an operator
suspending for an Acceptable Use reason that the user then reads, and a used reset link.
Screenshots at 1,280 and 390 px go to SIZZLE_SCREENSHOTS (default `artifacts/screenshots/`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.state import AppState
from tests.e2e.browser import both_widths, chromium_tab, needs_chromium, playwright_api, shot
from tests.helpers import PASSWORD, fresh_email, mailed_token, make_user, serve_here

pytestmark = needs_chromium


@pytest.fixture
async def page(state: AppState) -> AsyncIterator[Any]:
    async with serve_here(create_app(state=state, run_jobs=False)) as url:
        async with chromium_tab(url) as tab:
            yield tab


async def sign_in(page: Any, email: str) -> None:
    await page.goto("/signin")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()


async def test_the_legal_pages_are_linked_from_every_footer_and_read_well(
    page: Any,
) -> None:
    expect = playwright_api.expect
    await page.goto("/")
    footer = page.get_by_role("navigation", name="Legal", exact=True)
    await footer.get_by_role("link", name="Terms of Service").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Terms of Service")
    await expect(page.get_by_text("Version 2026-12-03")).to_be_visible()
    await both_widths(page, "30-legal-terms")
    await (
        page.get_by_role("navigation", name="Legal", exact=True)
        .get_by_role("link", name="Privacy")
        .click()
    )
    await expect(page.get_by_text("salted hash of your email address")).to_be_visible()
    await both_widths(page, "31-legal-privacy")
    await page.goto("/legal/acceptable-use")
    await expect(page.get_by_text("Mine cryptocurrency")).to_be_visible()
    await both_widths(page, "32-legal-acceptable-use")


async def test_a_newcomer_accepts_the_terms_and_gets_free_minutes_once_confirmed(
    page: Any, state: AppState
) -> None:
    expect = playwright_api.expect
    address = fresh_email()
    await page.goto("/signup")
    await page.get_by_label("Email").fill(address)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    # The browser itself refuses an unticked box (required); the server does too (tested in
    # tests/web): nothing is made.
    await expect(page).to_have_url(f"{page.url.split('/signup')[0]}/signup")
    await page.get_by_role("checkbox", name="I accept the Terms of Service").check()
    await both_widths(page, "33-signup-terms")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_text("One step left: confirm your email")).to_be_visible()
    await both_widths(page, "34-welcome-confirm")

    before = await page.request.get("/account/export.json")
    assert (await before.json())["balances"]["free_minutes"] == 0
    await page.goto(f"/verify-email?token={mailed_token(state, address, '/verify-email')}")
    await page.get_by_role("button", name="Confirm my email").click()
    await expect(page.get_by_text("your email is confirmed")).to_be_visible()
    await shot(page, "35-email-confirmed")
    me = await page.request.get("/account/export.json")
    assert (await me.json())["balances"]["free_minutes"] == 5


async def test_a_new_version_is_asked_for_at_the_next_sign_in(
    page: Any, state: AppState, db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    user = await make_user(db, now=clock.now())
    folder = tmp_path / "legal"
    folder.mkdir()
    (folder / "terms.md").write_text("<!-- version: 2027-01-01 -->\n# Terms of Service\n\nNew.\n")
    state.settings.legal_dir = folder
    await sign_in(page, user.email)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Our terms have changed")
    await both_widths(page, "36-accept-new-terms")
    await page.get_by_role("button", name="Accept and go on").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Our terms have changed")
    await page.get_by_role("checkbox").check()
    await page.get_by_role("button", name="Accept and go on").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def test_an_operator_suspends_for_the_aup_and_the_user_reads_why(
    page: Any, db: Database, clock: FakeClock
) -> None:
    expect = playwright_api.expect
    operator = await make_user(db, now=clock.now(), is_admin=True)
    customer = await make_user(db, now=clock.now())
    await sign_in(page, operator.email)
    await page.goto(f"/admin/users?q={customer.email}")
    row = page.locator("tr", has_text=customer.email)
    await row.get_by_text("Suspend", exact=True).click()
    await row.get_by_label("Reason").select_option("acceptable_use")
    await row.get_by_label("Note to the user").fill("Crypto mining on a starter GPU")
    await both_widths(page, "37-operator-suspend-form")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await row.get_by_role("button", name=f"Suspend {customer.email}").click()
    await expect(page.locator(".notice.ok")).to_contain_text("is suspended")
    await expect(page.locator("tr", has_text=customer.email)).to_contain_text(
        "Crypto mining on a starter GPU"
    )
    await shot(page, "38-operator-suspended")

    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page, customer.email)
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("suspended for breaking the Acceptable Use Policy")
    await expect(alert).to_contain_text("Crypto mining on a starter GPU")
    await both_widths(page, "39-signin-suspended")


async def test_a_used_reset_link_shows_a_way_to_a_new_one_not_the_form(
    page: Any, state: AppState, db: Database, clock: FakeClock
) -> None:
    expect = playwright_api.expect
    user = await make_user(db, now=clock.now())
    mail = await state.account_links.password_reset_mail(user.email, base_url="")
    assert mail is not None
    token = unquote(mail.body.split("token=", 1)[1].split()[0])
    await state.account_links.reset_password(token, "a brand new pass phrase")
    await page.goto(f"/reset-password?token={token}")
    await expect(page.get_by_role("alert")).to_contain_text("already used")
    await expect(page.get_by_label("New password")).to_have_count(0)
    await both_widths(page, "40-reset-link-used")
    await page.get_by_role("link", name="Ask for a new link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Forgot your password?")
