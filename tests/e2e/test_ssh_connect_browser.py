"""In a real browser (Debian's chromium, Playwright): someone adds their SSH key on the account
page, launches a GPU on a provider reached over SSH, starts it, and the live page shows the
exact ssh command and a VS Code link. Screenshots go to SIZZLE_SCREENSHOTS, as the journey's do.
"""

from __future__ import annotations

import asyncssh

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.state import AppState
from tests.e2e.test_browser_journey import CHROMIUM, SHOTS, WAIT_MS, playwright_api, shot
from tests.helpers import PASSWORD, make_user, serve_here
from tests.user_ssh import make_cloud

pytestmark = __import__("tests.e2e.test_browser_journey", fromlist=["pytestmark"]).pytestmark


async def test_a_user_adds_a_key_and_the_live_page_shows_how_to_connect(
    state: AppState, db: Database, clock: FakeClock
) -> None:
    expect = playwright_api.expect
    cloud = make_cloud(state, clock)
    user = await make_user(db, now=clock.now())
    key = asyncssh.generate_private_key("ssh-ed25519", comment="ada@laptop")
    line = key.export_public_key("openssh").decode().strip()
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with (
        serve_here(create_app(state=state, run_jobs=False)) as site,
        playwright_api.async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        context = await browser.new_context(base_url=site, viewport={"width": 1200, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        await page.goto("/signin")
        await page.get_by_label("Email").fill(user.email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()

        await page.goto("/account")
        section = page.locator("#ssh-keys-section")
        await expect(section).to_contain_text("Only needed if you want to log in")
        await expect(page.get_by_label("Public key")).to_be_hidden()  # folded for a newcomer
        await section.scroll_into_view_if_needed()
        await shot(page, "19-account-newcomer")
        await page.get_by_text("Add an SSH key").click()
        await page.get_by_label("Name").fill("laptop")
        await page.get_by_label("Public key").fill(line)
        await page.get_by_role("button", name="Add key").click()
        await expect(section).to_contain_text(key.get_fingerprint("sha256"))
        await section.scroll_into_view_if_needed()
        await shot(page, "20-account-ssh-keys")

        await page.goto("/launch?step=confirm&tier=starter")
        await page.get_by_role("button", name="Launch").click()
        await expect(page.locator("#status-words")).to_contain_text("Finding a GPU")
        await state.jobs.housekeep()  # launched on the SSH provider, with the key in its Boot
        await state.jobs.housekeep()  # it answers: ready
        await expect(page.locator("#status-words")).to_contain_text("Your GPU is ready")
        await expect(page.locator("#connect")).to_have_count(0)  # not billed yet: no way in
        await page.get_by_role("button", name="Start").click()

        await expect(page.locator("#ssh-command")).to_have_value("ssh -p 40022 root@203.0.113.7")
        await expect(page.locator("#ssh-key-names")).to_contain_text("“laptop”")
        vscode = page.get_by_role("link", name="Open in VS Code")
        await expect(vscode).to_have_attribute(
            "href", "vscode://vscode-remote/ssh-remote+root@203.0.113.7:40022/root"
        )
        await shot(page, "21-live-connect")
        await browser.close()
    [boot] = cloud.provider.boots
    assert boot is not None and boot.user_ssh_keys == (line,)
