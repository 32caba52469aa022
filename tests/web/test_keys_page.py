"""The API keys page: make a key with chosen scopes (shown once), use it, revoke it."""

from __future__ import annotations

import re

import httpx

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from tests.web.pages import csrf_of, post_form, sign_in


def shown_key(page: httpx.Response) -> str:
    found = re.search(r'id="new-key-value" type="text" value="(sz_live_[A-Za-z0-9]+)"', page.text)
    assert found, "the page does not show the new key"
    return found.group(1)


async def test_make_use_and_revoke_a_key(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    page = await browser.get("/account/keys")
    assert page.status_code == 200 and "No keys yet." in page.text
    made = await post_form(
        browser,
        "/account/keys",
        {"name": "nightly job", "scopes": ["sessions:read", "billing:read"], "expires": "30"},
    )
    assert made.status_code == 200, made.text
    key = shown_key(made)
    assert "shown this once" in made.text
    # shown once: the list has its prefix, never the key
    listing = await browser.get("/account/keys")
    assert key not in listing.text and key[:20] in listing.text
    assert "sessions:read, billing:read" in listing.text and "never" in listing.text

    api = {"X-API-Key": key}
    assert (await browser.get("/api/v1/sessions", headers=api)).status_code == 200
    assert (await browser.get("/v1/models", headers=api)).status_code == 403

    key_id = re.search(r'action="/account/keys/([0-9a-f]{32})/revoke"', listing.text)
    assert key_id
    revoked = await post_form(
        browser, f"/account/keys/{key_id.group(1)}/revoke", {}, page="/account/keys"
    )
    assert revoked.status_code == 303
    assert (await browser.get("/api/v1/sessions", headers=api)).status_code == 401
    assert "revoked" in (await browser.get("/account/keys")).text


async def test_a_key_needs_a_name_and_a_scope(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    no_scope = await post_form(browser, "/account/keys", {"name": "x"})
    assert no_scope.status_code == 422 and "scopes must be some of" in no_scope.text
    no_name = await post_form(browser, "/account/keys", {"name": " ", "scopes": ["inference"]})
    assert no_name.status_code == 422 and "give the key a name" in no_name.text
    odd_expiry = await post_form(
        browser, "/account/keys", {"name": "x", "scopes": ["inference"], "expires": "soon"}
    )
    assert odd_expiry.status_code == 422


async def test_the_keys_page_needs_sign_in_and_csrf(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    page = await browser.get("/account/keys", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=/account/keys"
    await sign_in(browser, db, clock=clock)
    token = csrf_of(await browser.get("/account/keys"))
    assert token
    forged = await browser.post("/account/keys", data={"name": "x", "scopes": "inference"})
    assert forged.status_code == 403
