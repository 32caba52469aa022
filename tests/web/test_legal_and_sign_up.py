"""The legal pages, accepting them at sign-up and again when they change, and the sign-up,
sign-in and reset forms' errors as sentences with the next step (issue 15)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import httpx
from sqlalchemy import func, select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import AuditEvent, User
from sizzle.legal import library
from sizzle.state import AppState
from tests.helpers import PASSWORD, fresh_email, make_user
from tests.web.pages import csrf_of, post_form

LEGAL = ("/legal/terms", "/legal/acceptable-use", "/legal/privacy")


async def _users(db: Database) -> int:
    async with db.read() as tx:
        return await tx.scalar(select(func.count()).select_from(User)) or 0


async def test_the_legal_pages_show_the_defaults_with_their_versions(
    browser: httpx.AsyncClient,
) -> None:
    terms = await browser.get("/legal/terms")
    assert terms.status_code == 200
    for words in ("<h1>Terms of Service</h1>", "per minute", "prepaid credit", "Refunds"):
        assert words in terms.text, words
    assert "Version 2026-12-03" in terms.text
    aup = await browser.get("/legal/acceptable-use")
    for words in ("Mine cryptocurrency", "Attack or break into systems", "illegal content"):
        assert words in aup.text, words
    privacy = await browser.get("/legal/privacy")
    assert "salted hash of your email address" in privacy.text
    assert "free minutes are not given twice" in privacy.text
    missing = await browser.get("/legal/cookies")
    assert missing.status_code == 404


async def test_every_page_links_the_legal_pages_in_its_footer(
    browser: httpx.AsyncClient,
) -> None:
    for path in ("/", "/signin", "/signup", "/legal/privacy", "/forgot-password"):
        page = await browser.get(path)
        footer = page.text.split('<footer class="bottom">', 1)[1]
        for link in LEGAL:
            assert f'href="{link}"' in footer, (path, link)


async def test_an_operators_files_replace_the_defaults_and_are_shown_escaped(
    browser: httpx.AsyncClient, state: AppState, tmp_path: Path
) -> None:
    folder = tmp_path / "legal"
    folder.mkdir()
    (folder / "terms.md").write_text(
        "<!-- version: 2027-02-01 -->\n# Our terms\n\n<script>alert(1)</script>\n\n"
        "[click](javascript:alert(2)) and **bold**\n"
    )
    (folder / "privacy.md").write_text("# Privacy\n\nNo version line: a digest of the text.\n")
    state.settings.legal_dir = folder

    terms = await browser.get("/legal/terms")
    assert "<h1>Our terms</h1>" in terms.text and "Version 2027-02-01" in terms.text
    assert "<script>alert(1)</script>" not in terms.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in terms.text
    assert 'href="javascript:' not in terms.text and "<strong>bold</strong>" in terms.text
    privacy = await browser.get("/legal/privacy")
    version = library(folder).document("privacy").version
    assert len(version) == 12 and f"Version {version}" in privacy.text
    # The file not replaced stays the default.
    assert "Mine cryptocurrency" in (await browser.get("/legal/acceptable-use")).text


async def test_an_operators_file_that_cannot_be_read_never_breaks_a_page(
    browser: httpx.AsyncClient, state: AppState, tmp_path: Path
) -> None:
    folder = tmp_path / "legal"
    folder.mkdir()
    (folder / "terms.md").write_bytes(b"# Terms \xff\xfe in Latin-1\n")
    (folder / "privacy.md").mkdir()  # not a file: the default stays
    (folder / "acceptable-use.md").symlink_to(folder / "gone.md")  # a dangling link
    state.settings.legal_dir = folder
    for path in LEGAL:
        assert (await browser.get(path)).status_code == 200, path
    assert "Terms \ufffd\ufffd in Latin-1" in (await browser.get("/legal/terms")).text
    assert "salted hash" in (await browser.get("/legal/privacy")).text
    assert "Mine cryptocurrency" in (await browser.get("/legal/acceptable-use")).text


async def test_sign_up_needs_the_box_ticked(browser: httpx.AsyncClient, db: Database) -> None:
    page = await browser.get("/signup")
    assert 'name="accept_terms"' in page.text and 'href="/legal/terms"' in page.text
    refused = await post_form(browser, "/signup", {"email": fresh_email(), "password": PASSWORD})
    assert refused.status_code == 422
    assert 'role="alert"' in refused.text and "Tick the box to accept" in refused.text
    assert await _users(db) == 0


async def test_sign_up_keeps_the_version_accepted_and_audits_it(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    email = fresh_email()
    made = await post_form(
        browser, "/signup", {"email": email, "password": PASSWORD, "accept_terms": "yes"}
    )
    assert made.status_code == 303 and made.headers["location"] == "/welcome"
    welcome = await browser.get("/welcome")
    assert "confirm your email" in welcome.text and "5 free minutes" in welcome.text
    async with db.read() as tx:
        user = await tx.scalar(select(User).where(User.email == email))
        assert user is not None
        assert user.terms_version == library(None).acceptance_version()
        assert user.terms_accepted_at == clock.now()
        audited = await tx.scalar(
            select(AuditEvent.detail).where(
                AuditEvent.user_id == user.id, AuditEvent.action == "legal.accepted"
            )
        )
    assert audited == user.terms_version


async def test_web_sign_up_validates_the_address_as_the_api_does(
    browser: httpx.AsyncClient, db: Database
) -> None:
    """Finding 7: `not-an-email` and a 312-character address were accepted on the web."""
    long_address = "a" * 300 + "@example.com"
    assert len(long_address) == 312
    for typed in ("not-an-email", long_address):
        refused = await post_form(
            browser, "/signup", {"email": typed, "password": PASSWORD, "accept_terms": "yes"}
        )
        assert refused.status_code == 422, typed
        assert "is not an email address we can use" in refused.text
        assert "Check it and type it again" in refused.text
    assert await _users(db) == 0


async def test_a_long_name_is_a_sentence_on_the_form_not_an_api_string(
    browser: httpx.AsyncClient, db: Database
) -> None:
    refused = await post_form(
        browser,
        "/signup",
        {"email": fresh_email(), "password": PASSWORD, "name": "n" * 101, "accept_terms": "yes"},
    )
    assert refused.status_code == 422 and 'role="alert"' in refused.text
    assert "Your name can be at most 100 characters long" in refused.text
    assert "String should have" not in refused.text
    assert 'name="email"' in refused.text  # the form again, not an error page
    assert await _users(db) == 0


async def test_a_wrong_password_is_a_sentence_with_the_next_step(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    wrong = await post_form(browser, "/signin", {"email": user.email, "password": "nope nope"})
    assert wrong.status_code == 401
    assert "That email and password do not match an account" in wrong.text
    assert "Forgot your password" in wrong.text


async def test_a_new_version_is_accepted_at_the_next_sign_in_before_going_on(
    browser: httpx.AsyncClient, state: AppState, clock: FakeClock, tmp_path: Path
) -> None:
    user = await make_user(state.db, now=clock.now())
    folder = tmp_path / "legal"
    folder.mkdir()
    (folder / "acceptable-use.md").write_text("<!-- version: 2027-03-01 -->\n# AUP\n\nNew.\n")
    state.settings.legal_dir = folder

    asked = await post_form(
        browser, "/signin", {"email": user.email, "password": PASSWORD, "next": "/billing"}
    )
    assert asked.status_code == 200 and "Our terms have changed" in asked.text
    assert "version 2027-03-01" in asked.text
    assert "sizzle_session" not in browser.cookies  # not signed in yet
    assert (await browser.get("/account")).status_code == 303

    token = asked.text.split('name="token" value="', 1)[1].split('"', 1)[0]
    form = {"csrf_token": csrf_of(asked), "token": token, "next": "/billing"}
    unticked = await browser.post("/signin/accept-terms", data=form)
    assert unticked.status_code == 422 and "Tick the box" in unticked.text
    accepted = await browser.post("/signin/accept-terms", data={**form, "accept_terms": "yes"})
    assert accepted.status_code == 303 and accepted.headers["location"] == "/billing"
    assert (await browser.get("/account")).status_code == 200
    async with state.db.read() as tx:
        row = await tx.get(User, user.id)
    assert row is not None and row.terms_version == library(folder).acceptance_version()

    # Accepted once: the next sign-in goes straight on.
    browser.cookies.clear()
    again = await post_form(browser, "/signin", {"email": user.email, "password": PASSWORD})
    assert again.status_code == 303


async def test_the_acceptance_form_cannot_be_forged_or_replayed_after_a_change(
    browser: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    user = await make_user(state.db, now=clock.now(), accepted_terms=False)
    asked = await post_form(browser, "/signin", {"email": user.email, "password": PASSWORD})
    assert "Our terms have changed" in asked.text
    form = {"csrf_token": csrf_of(asked), "accept_terms": "yes"}
    forged = await browser.post("/signin/accept-terms", data={**form, "token": "junk"})
    assert forged.status_code == 401 and "Sign in again" in forged.text
    token = asked.text.split('name="token" value="', 1)[1].split('"', 1)[0]
    clock.advance(16 * 60)  # the password was proven too long ago
    late = await browser.post("/signin/accept-terms", data={**form, "token": token})
    assert late.status_code == 401 and "took too long" in late.text


async def reset_token(state: AppState, clock: FakeClock) -> str:
    """A new user's reset link, as mailed."""
    user = await make_user(state.db, now=clock.now())
    mail = await state.account_links.password_reset_mail(user.email, base_url="")
    assert mail is not None
    return unquote(mail.body.split("token=", 1)[1].split()[0])


async def test_a_used_reset_link_says_so_before_showing_the_form(
    browser: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    token = await reset_token(state, clock)
    fresh = await browser.get("/reset-password", params={"token": token})
    assert fresh.status_code == 200 and 'name="new_password"' in fresh.text
    await state.account_links.reset_password(token, "a brand new pass phrase")

    used = await browser.get("/reset-password", params={"token": token})
    assert used.status_code == 400
    assert "already used" in used.text and 'href="/forgot-password"' in used.text
    assert 'name="new_password"' not in used.text  # no form to fill in for nothing


async def test_an_expired_or_broken_reset_link_says_what_to_do(
    browser: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    token = await reset_token(state, clock)
    clock.advance(state.settings.password_reset_minutes * 60 + 1)
    expired = await browser.get("/reset-password", params={"token": token})
    assert expired.status_code == 400 and "This link has expired" in expired.text
    assert 'name="new_password"' not in expired.text
    broken = await browser.get("/reset-password", params={"token": "cut-short"})
    assert broken.status_code == 400 and "Ask for a new link" in broken.text


async def test_a_broken_confirmation_link_shows_no_button(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/verify-email", params={"token": "cut-short"})
    assert page.status_code == 400 and "This link is not valid" in page.text
    assert "Confirm my email" not in page.text
