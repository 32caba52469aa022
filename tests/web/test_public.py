"""The public pages: landing, sign up, sign in, sign out, errors; the cookie and CSRF rules."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import AuditEvent, User
from tests.helpers import PASSWORD, fresh_email, make_user
from tests.web.pages import csrf_of, post_form, sign_in


async def test_the_landing_page_says_what_sizzle_does_with_tiers_and_prices(
    browser: httpx.AsyncClient,
) -> None:
    page = await browser.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for words in (
        "free minutes",
        "Starter",
        "Pro",
        "Beast",
        "Ultra",
        "$0.15",
        "Available now",
    ):
        assert words in page.text, words
    assert 'href="/signup"' in page.text


async def test_sign_up_sets_a_secure_httponly_samesite_cookie_and_opens_the_wizard(
    browser: httpx.AsyncClient,
) -> None:
    response = await post_form(
        browser,
        "/signup",
        {"email": fresh_email(), "password": PASSWORD, "name": "Ada", "accept_terms": "yes"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/welcome"
    cookie = next(
        value
        for key, value in response.headers.multi_items()
        if key == "set-cookie" and value.startswith("sizzle_session=")
    )
    lowered = cookie.lower()
    assert "httponly" in lowered and "secure" in lowered and "samesite=lax" in lowered
    home = await browser.get("/")
    assert "Sign out" in home.text and "Launch a GPU" in home.text


async def test_sign_up_errors_are_shown_on_the_form(browser: httpx.AsyncClient) -> None:
    weak = await post_form(
        browser, "/signup", {"email": fresh_email(), "password": "short", "accept_terms": "yes"}
    )
    assert weak.status_code == 422
    assert 'role="alert"' in weak.text
    email = fresh_email()
    fields = {"email": email, "password": PASSWORD, "accept_terms": "yes"}
    await post_form(browser, "/signup", fields)
    browser.cookies.clear()
    taken = await post_form(browser, "/signup", fields)
    assert taken.status_code == 409
    assert "already exists" in taken.text
    assert email in taken.text  # what was typed is kept


NOT_ONE_ADDRESS = (
    "a@evil.example.com, victim@corp.example.com",  # a list: the mail would go to both
    "a@evil.example.com\r\nBcc: victim@corp.example.com",  # a header smuggled in
    "<b>x</b>@example.com",
    "Victim <victim@corp.example.com>",
    "a@evil.example.com;victim@corp.example.com",
)


async def test_every_form_refuses_what_is_not_one_plain_address(
    browser: httpx.AsyncClient, db: Database
) -> None:
    """Sign-up, sign-in and forgot-password use the API's address validator."""
    for typed in NOT_ONE_ADDRESS:
        for path, fields in (
            ("/signup", {"password": PASSWORD, "name": "Ada"}),
            ("/signin", {"password": PASSWORD}),
            ("/forgot-password", {}),
        ):
            refused = await post_form(browser, path, {"email": typed, **fields})
            assert refused.status_code == 422, (path, typed, refused.status_code)
            assert "not an email address" in refused.text and 'role="alert"' in refused.text
    async with db.read() as tx:
        made = await tx.scalar(select(func.count()).select_from(User))
    assert made == 0


async def test_a_form_without_the_csrf_token_is_refused(browser: httpx.AsyncClient) -> None:
    await browser.get("/signup")  # the CSRF cookie is set
    missing = await browser.post("/signup", data={"email": fresh_email(), "password": PASSWORD})
    assert missing.status_code == 403
    assert "reload the page" in missing.text
    forged = await browser.post(
        "/signup", data={"email": fresh_email(), "password": PASSWORD, "csrf_token": "x" * 40}
    )
    assert forged.status_code == 403


async def test_sign_in_and_out(browser: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    user = await sign_in(browser, db, clock=clock)
    assert "Sign out" in (await browser.get("/")).text
    out = await post_form(browser, "/signout", {}, page="/")
    assert out.status_code == 303
    assert "Sign out" not in (await browser.get("/")).text
    async with db.read() as tx:
        actions = list(
            await tx.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.user_id == user.id)
                .order_by(AuditEvent.id)
            )
        )
    assert actions[-2:] == ["auth.sign_in", "auth.sign_out"]


async def test_a_sign_in_lands_operators_on_the_overview_and_others_on_their_sessions(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    for is_admin, landing in ((False, "/sessions"), (True, "/admin")):
        browser.cookies.clear()
        user = await make_user(db, now=clock.now(), is_admin=is_admin)
        form = {"email": user.email, "password": PASSWORD}
        signed_in = await post_form(browser, "/signin", form)
        assert signed_in.headers["location"] == landing
        assert (await browser.get("/signin")).headers["location"] == landing  # already in
    browser.cookies.clear()
    sent_from = await post_form(browser, "/signin", form | {"next": "/billing"})
    assert sent_from.headers["location"] == "/billing"  # a page that sent them wins
    browser.cookies.clear()
    away = await post_form(browser, "/signin", form | {"next": "https://evil.example/"})
    assert away.headers["location"] == "/admin"  # never another site


async def test_a_wrong_password_says_so_on_the_form(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    browser.cookies.delete("sizzle_session")
    wrong = await post_form(browser, "/signin", {"email": user.email, "password": "not it at all"})
    assert wrong.status_code == 401
    assert 'role="alert"' in wrong.text


async def test_a_page_that_needs_an_account_sends_you_to_sign_in_and_back(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    away = await browser.get("/sessions")
    assert away.status_code == 303
    assert away.headers["location"] == "/signin?next=/sessions"
    user = await sign_in(browser, db, clock=clock)
    browser.cookies.delete("sizzle_session")
    page = await browser.get("/signin?next=/billing")
    back = await browser.post(
        "/signin",
        data={
            "email": user.email,
            "password": PASSWORD,
            "next": "/billing",
            "csrf_token": csrf_of(page),
        },
    )
    assert back.headers["location"] == "/billing"


async def test_next_never_leads_off_the_site(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    browser.cookies.delete("sizzle_session")
    for target in ("https://evil.example", "//evil.example", "/\\evil.example"):
        page = await browser.get("/signin")
        response = await browser.post(
            "/signin",
            data={
                "email": user.email,
                "password": PASSWORD,
                "next": target,
                "csrf_token": csrf_of(page),
            },
        )
        assert response.headers["location"] == "/sessions", target
        browser.cookies.delete("sizzle_session")


async def test_an_unknown_page_is_a_404_page_in_the_site_style(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/no/such/page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "We could not find that page" in page.text
    api = await browser.get("/api/v1/no/such/thing")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"


async def test_static_files_are_served_from_the_package(browser: httpx.AsyncClient) -> None:
    for path in ("/static/sizzle.css", "/static/vendor/htmx-2.0.11.min.js"):
        response = await browser.get(path)
        assert response.status_code == 200, path
