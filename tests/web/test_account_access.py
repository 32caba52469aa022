"""The pages for getting back in and proving an address, and the account page's data and
deletion; mail goes through a real SMTP server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import User
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import PASSWORD, fresh_email, make_user
from tests.smtp_inbox import Inbox
from tests.web.pages import csrf_of, post_form, sign_in

NEW_PASSWORD = "a brand new pass phrase"


@pytest.fixture
async def site(
    settings: Settings, clock: FakeClock, db: Database, inbox: tuple[Inbox, int]
) -> AsyncIterator[tuple[httpx.AsyncClient, AppState, Inbox]]:
    mails, port = inbox
    state = AppState.build(
        settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"}), clock=clock, db=db
    )
    app = create_app(state=state, run_jobs=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as client:
        yield client, state, mails


async def test_forgot_password_mails_a_link_that_sets_a_new_one(
    site: Any, clock: FakeClock
) -> None:
    browser, state, mails = site
    user = await make_user(state.db, now=clock.now())
    sign_in_page = await browser.get("/signin")
    assert 'href="/forgot-password"' in sign_in_page.text

    asked = await post_form(browser, "/forgot-password", {"email": user.email})
    assert (
        asked.status_code == 200 and "a link to choose a new password is on its way" in asked.text
    )
    unknown = await post_form(browser, "/forgot-password", {"email": "nobody@example.com"})
    assert "is on its way" in unknown.text  # the same words: nobody learns who has an account
    assert len(mails.to(user.email)) == 1 and not mails.to("nobody@example.com")
    token = mails.link(user.email, "/reset-password")

    form = await browser.get("/reset-password", params={"token": token})
    assert form.status_code == 200 and 'name="token"' in form.text
    differ = await browser.post(
        "/reset-password",
        data={
            "csrf_token": csrf_of(form),
            "token": token,
            "new_password": NEW_PASSWORD,
            "repeat_password": "something else entirely",
        },
    )
    assert differ.status_code == 422 and "not the same" in differ.text
    done = await browser.post(
        "/reset-password",
        data={
            "csrf_token": csrf_of(form),
            "token": token,
            "new_password": NEW_PASSWORD,
            "repeat_password": NEW_PASSWORD,
        },
    )
    assert done.status_code == 303 and done.headers["location"] == "/signin?reset=1"
    assert "Your new password is set" in (await browser.get("/signin?reset=1")).text
    used = await browser.post(
        "/reset-password",
        data={
            "csrf_token": csrf_of(form),
            "token": token,
            "new_password": "yet another good phrase",
            "repeat_password": "yet another good phrase",
        },
    )
    assert used.status_code == 400 and "already used" in used.text
    assert 'href="/forgot-password"' in used.text

    signed_in = await post_form(browser, "/signin", {"email": user.email, "password": NEW_PASSWORD})
    assert signed_in.status_code == 303


async def test_the_reset_page_needs_the_csrf_token(site: Any, clock: FakeClock) -> None:
    browser, _state, _mails = site
    refused = await browser.post(
        "/reset-password",
        data={"token": "x", "new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD},
    )
    assert refused.status_code == 403


async def test_sign_up_mails_a_confirmation_that_a_button_applies(site: Any) -> None:
    browser, state, mails = site
    address = fresh_email()
    signed_up = await post_form(
        browser, "/signup", {"email": address, "password": PASSWORD, "accept_terms": "yes"}
    )
    assert signed_up.status_code == 303
    account = await browser.get("/account")
    assert "not confirmed" in account.text and "Mail me the link again" in account.text
    token = mails.link(address, "/verify-email")

    # Opening the link (as a mail scanner would) changes nothing; the button does.
    page = await browser.get("/verify-email", params={"token": token})
    assert page.status_code == 200 and "Confirm my email" in page.text
    async with state.db.read() as tx:
        user = await tx.scalar(select(User).where(User.email == address))
        assert user is not None and user.email_verified_at is None
    confirmed = await browser.post(
        "/verify-email", data={"csrf_token": csrf_of(page), "token": token}
    )
    assert confirmed.status_code == 200 and "your email is confirmed" in confirmed.text
    assert "confirmed</span>" in (await browser.get("/account")).text
    bad = await browser.post("/verify-email", data={"csrf_token": csrf_of(page), "token": "junk"})
    assert bad.status_code == 400 and "not valid" in bad.text


async def test_the_account_page_mails_the_link_again(site: Any, clock: FakeClock) -> None:
    browser, state, mails = site
    user = await sign_in(browser, state.db, clock=clock)
    sent = await post_form(browser, "/account/verify-email", {}, page="/account")
    assert sent.status_code == 303 and sent.headers["location"] == "/account?verification=sent"
    assert "A new link is on its way" in (await browser.get(sent.headers["location"])).text
    assert len(mails.to(user.email)) == 1


async def test_download_my_data_and_delete_my_account(site: Any, clock: FakeClock) -> None:
    browser, state, _mails = site
    user = await sign_in(browser, state.db, clock=clock)
    account = await browser.get("/account")
    assert 'href="/account/export.json"' in account.text

    exported = await browser.get("/account/export.json")
    assert exported.status_code == 200
    assert exported.json()["account"]["email"] == user.email

    unticked = await post_form(browser, "/account/delete", {"password": PASSWORD}, page="/account")
    assert unticked.status_code == 422 and "tick the box" in unticked.text
    wrong = await post_form(
        browser, "/account/delete", {"password": "nope", "confirm": "yes"}, page="/account"
    )
    assert wrong.status_code == 401 and "password is not right" in wrong.text
    gone = await post_form(
        browser, "/account/delete", {"password": PASSWORD, "confirm": "yes"}, page="/account"
    )
    assert gone.status_code == 303 and gone.headers["location"] == "/?deleted=1"
    landing = await browser.get("/?deleted=1")
    assert "Your account is deleted" in landing.text
    # Signed out: the old cookie is cleared, and would be refused anyway.
    assert (await browser.get("/account")).status_code == 303
    async with state.db.read() as tx:
        row = await tx.get(User, user.id)
        assert row is not None and row.deleted_at is not None and row.email != user.email


async def test_the_audit_page_filters_and_pages(site: Any, clock: FakeClock) -> None:
    browser, state, _mails = site
    operator = await sign_in(browser, state.db, clock=clock, is_admin=True)
    other = await make_user(state.db, now=clock.now())
    page = await browser.get("/admin/audit")
    assert page.status_code == 200 and "Audit log" in page.text
    assert "auth.sign_in" in page.text and 'aria-current="page">Audit log' in page.text
    theirs = await browser.get("/admin/audit", params={"user": other.email})
    assert "account.created" in theirs.text and operator.email not in theirs.text
    nobody = await browser.get("/admin/audit", params={"user": "ghost@example.com"})
    assert "No events match" in nobody.text
    bad_day = await browser.get("/admin/audit", params={"since": "yesterday"})
    assert bad_day.status_code == 422
    last_day = await browser.get("/admin/audit", params={"until": "9999-12-31"})
    assert last_day.status_code == 200
    nul = await browser.get("/admin/audit", params={"user": "\x00"})
    assert nul.status_code == 422  # as in every page's query (tests/api/test_hostile_input.py)
    one_day = await browser.get(
        "/admin/audit", params={"since": clock.now().date().isoformat(), "limit": 1}
    )
    assert "Older" in one_day.text
    csv_file = await browser.get("/admin/audit.csv", params={"user": other.email})
    assert csv_file.text.splitlines()[0].startswith("at,action,actor")
    # the header, account.created, legal.accepted, free minutes
    assert len(csv_file.text.splitlines()) == 4


async def test_a_nul_in_an_address_is_bad_input_not_a_500(site: Any) -> None:
    """PostgreSQL text cannot hold a NUL: every form refuses one before its handler."""
    browser, _state, mails = site
    for path in ("/signin", "/forgot-password", "/signup"):
        fields = {"email": "a\x00b@example.com", "password": PASSWORD}
        answer = await post_form(
            browser, path, fields if path != "/forgot-password" else {"email": fields["email"]}
        )
        assert answer.status_code == 422, (path, answer.status_code)
        assert "NUL character" in answer.text
    assert mails.messages == []
