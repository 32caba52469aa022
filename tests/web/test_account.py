"""The account pages: billing (balance, free minutes, transactions) and the profile with its
password form."""

from __future__ import annotations

import re

import httpx
import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import User
from sizzle.state import AppState
from tests.helpers import PASSWORD, grant, launch_active_session, log_in, make_user, run_for
from tests.web.pages import post_form, sign_in

NEW_PASSWORD = "purple otter saxophone"


def stat(page: httpx.Response, label: str) -> str:
    """The value shown in the stat box with this label."""
    found = re.search(
        rf'<div class="label">{re.escape(label)}</div><div class="value">([^<]*)</div>', page.text
    )
    assert found, f"no stat {label!r} on the page"
    return found.group(1)


async def change_password(browser: httpx.AsyncClient, **fields: str) -> httpx.Response:
    form = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    form.update(fields)
    form.setdefault("repeat_password", form["new_password"])
    return await post_form(browser, "/account/password", form, page="/account")


async def signs_in(browser: httpx.AsyncClient, *, email: str, password: str) -> bool:
    browser.cookies.clear()
    response = await post_form(browser, "/signin", {"email": email, "password": password})
    return response.status_code == 303


@pytest.mark.parametrize("path", ["/billing", "/account"])
async def test_the_account_pages_send_a_stranger_to_sign_in(
    browser: httpx.AsyncClient, path: str
) -> None:
    response = await browser.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/signin?next={path}"


async def test_billing_shows_credit_free_minutes_and_a_grant(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock, credit_usd="12.50", free_minutes=5)
    clock.advance(60)
    await grant(db, email=user.email, usd="7.25", now=clock.now())
    page = await browser.get("/billing")
    assert page.status_code == 200
    assert stat(page, "Credit") == "$19.75"
    assert stat(page, "Free minutes left") == "5"
    assert stat(page, "Minutes on Starter") == str(5 + 131)  # $19.75 // $0.15 = 131
    assert "Credit added" in page.text and "+$7.25" in page.text and "+$12.50" in page.text
    assert "+5 free min" in page.text
    assert page.text.index("+$7.25") < page.text.index("+$12.50")  # newest first
    assert "cannot start until credit is added" not in page.text
    assert "not set up on this Sizzle yet" in page.text and "operator" in page.text


async def test_billing_says_plainly_when_nothing_can_start(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="0", free_minutes=0)
    page = await browser.get("/billing")
    assert stat(page, "Credit") == "$0.00"
    assert stat(page, "Free minutes left") == "0"
    assert "cannot start until credit is added" in page.text
    assert "No transactions yet" in page.text


async def test_credit_below_one_minute_also_cannot_start(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="0.10", free_minutes=0)
    page = await browser.get("/billing")
    assert "does not cover a minute" in page.text
    assert "cannot start until credit is added" in page.text


async def test_free_minutes_alone_are_enough_to_start(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="0", free_minutes=1)
    page = await browser.get("/billing")
    assert "cannot start until credit is added" not in page.text


async def test_transactions_are_paged_newest_first(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock, credit_usd="0", free_minutes=0)
    for amount in ("1.00", "2.00", "3.00"):
        clock.advance(60)
        await grant(db, email=user.email, usd=amount, now=clock.now())
    first = await browser.get("/billing?limit=2")
    assert "+$3.00" in first.text and "+$2.00" in first.text and "+$1.00" not in first.text
    assert first.text.index("+$3.00") < first.text.index("+$2.00")
    assert 'href="?offset=2&limit=2">Older' in first.text
    second = await browser.get("/billing?offset=2&limit=2")
    assert "+$1.00" in second.text and "+$3.00" not in second.text
    assert "Newer" in second.text and "Older" not in second.text


async def test_session_minutes_link_to_their_session(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    user = await sign_in(browser, db, clock=clock, credit_usd="1.00", free_minutes=1)
    auth = await log_in(browser, email=user.email)
    session_id = await launch_active_session(browser, state, clock, auth=auth)
    await run_for(state, clock, seconds=90)  # minute 1 from free minutes, minute 2 from credit
    page = await browser.get("/billing")
    assert f'href="/sessions/{session_id}"' in page.text
    assert "GPU time" in page.text
    assert "minute 1" in page.text and "minute 2" in page.text
    assert "−1 free min" in page.text and "−$0.15" in page.text
    assert stat(page, "Credit") == "$0.85"
    assert stat(page, "Free minutes left") == "0"


async def test_another_users_money_and_details_never_show(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    other = await make_user(db, now=clock.now(), credit_usd="99.99", free_minutes=42)
    await grant(db, email=other.email, usd="31.41", now=clock.now())
    await sign_in(browser, db, clock=clock, credit_usd="12.50", free_minutes=5)
    billing = await browser.get("/billing")
    profile = await browser.get("/account")
    for page in (billing, profile):
        assert other.email not in page.text
        for theirs in ("99.99", "31.41", "131.40"):
            assert theirs not in page.text, theirs
    assert stat(billing, "Credit") == "$12.50"
    assert stat(billing, "Free minutes left") == "5"


async def test_the_profile_shows_who_i_am_with_a_labelled_password_form(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock, plan="starter")
    async with db.transaction() as tx:
        stored = await tx.get(User, user.id)
        assert stored is not None
        stored.name = "Ada Lovelace"
    page = await browser.get("/account")
    assert page.status_code == 200
    for words in (user.email, "Ada Lovelace", "Starter", "01 March 2026", "2 sessions at once"):
        assert words in page.text, words
    assert 'action="/account/password"' in page.text
    for field, autocomplete in (
        ("current_password", "current-password"),
        ("new_password", "new-password"),
        ("repeat_password", "new-password"),
    ):
        assert f'<label for="{field}">' in page.text
        assert re.search(
            rf'<input id="{field}" name="{field}" type="password" autocomplete="{autocomplete}"',
            page.text,
        ), field


async def test_changing_the_password_lets_me_sign_in_with_the_new_one_only(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    response = await change_password(browser)
    assert response.status_code == 200
    assert '<div class="notice ok" role="status">Password changed.</div>' in response.text
    assert not await signs_in(browser, email=user.email, password=PASSWORD)
    assert await signs_in(browser, email=user.email, password=NEW_PASSWORD)


async def test_a_wrong_current_password_changes_nothing(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    response = await change_password(browser, current_password="not my password")
    assert response.status_code == 401
    assert 'role="alert"' in response.text and "not your current password" in response.text
    assert "Password changed." not in response.text
    assert await signs_in(browser, email=user.email, password=PASSWORD)


async def test_new_passwords_that_differ_are_refused(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    response = await change_password(browser, repeat_password="purple otter trombone")
    assert response.status_code == 422
    assert 'role="alert"' in response.text and "not the same" in response.text
    assert await signs_in(browser, email=user.email, password=PASSWORD)


@pytest.mark.parametrize(
    ("weak", "message"),
    [("short1", "at least 8 characters"), ("password1", "too easy to guess")],
)
async def test_a_weak_new_password_is_refused_with_the_reason(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, weak: str, message: str
) -> None:
    user = await sign_in(browser, db, clock=clock)
    response = await change_password(browser, new_password=weak)
    assert response.status_code == 422
    assert 'role="alert"' in response.text and message in response.text
    assert not await signs_in(browser, email=user.email, password=weak)


async def test_a_password_change_without_the_csrf_token_is_refused(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    response = await browser.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "repeat_password": NEW_PASSWORD,
        },
    )
    assert response.status_code == 403
    assert "reload the page" in response.text
    assert await signs_in(browser, email=user.email, password=PASSWORD)
