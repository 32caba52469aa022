"""The pages: a bell with the unread count in every signed-in page's header; the inbox
(newest first, each linking where it tells of, "mark all read"); the account page's
"Notifications" section, whose money-critical kinds are ticked and cannot be unticked."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import NotificationOptOut, User
from sizzle.services.notifications import Kind, notify
from tests.web.pages import csrf_of, post_form, sign_in


async def tell(db: Database, user: User, clock: FakeClock, key: str, title: str) -> None:
    async with db.transaction() as tx:
        await notify(
            tx,
            user_id=user.id,
            kind=Kind.SESSION_READY,
            key=key,
            title=title,
            body=f"The body of {title}.",
            now=clock.now(),
            link=f"/sessions/{key}",
        )
    clock.advance(60)


def bell(page: httpx.Response) -> str:
    found = re.search(r'<a class="bell"[^>]*aria-label="([^"]*)"', page.text, re.S)
    assert found, "no bell in the header"
    return found.group(1)


async def test_the_bell_counts_unread_and_the_inbox_lists_newest_first(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    assert bell(await browser.get("/launch")) == "Notifications"
    await tell(db, user, clock, "first", "Older news")
    await tell(db, user, clock, "second", "Newer news")
    assert bell(await browser.get("/launch")) == "Notifications, 2 unread"
    inbox = await browser.get("/notifications")
    assert inbox.status_code == 200
    assert inbox.text.index("Newer news") < inbox.text.index("Older news")
    assert '<a href="/sessions/second">Newer news</a>' in inbox.text
    assert "The body of Older news." in inbox.text

    marked = await post_form(browser, "/notifications/read", {}, page="/notifications")
    assert (marked.status_code, marked.headers["location"]) == (303, "/notifications")
    after = await browser.get("/notifications")
    assert bell(after) == "Notifications" and "Mark all read" not in after.text


async def test_the_inbox_is_paged_and_says_when_empty(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    assert "Nothing yet." in (await browser.get("/notifications")).text
    for number in range(3):
        await tell(db, user, clock, f"n{number}", f"Number {number}")
    first = await browser.get("/notifications?limit=2")
    assert "Number 2" in first.text and "Number 0" not in first.text
    assert 'href="?offset=2&limit=2">Older</a>' in first.text
    assert "Number 0" in (await browser.get("/notifications?limit=2&offset=2")).text


async def test_marking_read_needs_the_forms_token(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    await tell(db, user, clock, "a", "News")
    refused = await browser.post("/notifications/read", data={})
    assert refused.status_code == 403
    assert bell(await browser.get("/notifications")) == "Notifications, 1 unread"


async def test_the_account_page_turns_kinds_off_but_never_money(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    page = await browser.get("/account")
    assert 'id="notifications"' in page.text
    low = re.search(r'<input type="checkbox" name="mail_credit_low"[^>]*>', page.text, re.S)
    assert low and "disabled" in low.group(0) and "checked" in low.group(0)
    assert "always go out" in page.text
    saved = await browser.post(
        "/account/notifications",
        data={
            "csrf_token": csrf_of(page),
            "mail_session_ready": "on",
            "still_running_every_hours": "8",
            # a crafted form cannot turn money off: only the kinds that may be are read
            "mail_credit_low": "off",
        },
    )
    assert (saved.status_code, saved.headers["location"]) == (
        303,
        "/account?notifications=saved#notifications",
    )
    async with db.read() as tx:
        off = set(
            await tx.scalars(
                select(NotificationOptOut.kind).where(NotificationOptOut.user_id == user.id)
            )
        )
        hours = await tx.scalar(select(User.still_running_every_hours).where(User.id == user.id))
    assert off == {k.value for k in Kind if not k.money_critical} - {"session_ready"}
    assert hours == 8
    again = await browser.get("/account?notifications=saved")
    assert "Saved." in again.text and '<option value="8" selected>' in again.text
    ready = re.search(r'name="mail_session_ready"[^>]*>', again.text, re.S)
    idle = re.search(r'name="mail_idle_warning"[^>]*>', again.text, re.S)
    assert ready and "checked" in ready.group(0) and idle and "checked" not in idle.group(0)


async def test_a_bad_reminder_interval_is_said_on_the_page(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    for value, said in (
        ("3", "“still running” reminders come every 1, 2, 4 or 8 hours, or never (0)"),
        ("lots", "choose how often to be reminded"),
    ):
        response = await post_form(
            browser, "/account/notifications", {"still_running_every_hours": value}, page="/account"
        )
        assert response.status_code == 422
        assert f'<div class="notice error" role="alert">{said}</div>' in response.text
