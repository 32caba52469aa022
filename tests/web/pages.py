"""Helpers for page tests: a browser-like client (cookies kept), CSRF tokens read from pages."""

from __future__ import annotations

import re
from typing import Any

import httpx

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import User
from tests.helpers import PASSWORD, make_user

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(page.text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def post_form(
    client: httpx.AsyncClient, path: str, data: dict[str, Any], *, page: str | None = None
) -> httpx.Response:
    """Submit a form as a browser would: the token from the page (`page`, default `path`)."""
    token = csrf_of(await client.get(page or path))
    return await client.post(path, data={**data, "csrf_token": token})


async def sign_in(
    client: httpx.AsyncClient,
    db: Database,
    *,
    clock: FakeClock,
    is_admin: bool = False,
    credit_usd: str = "0",
    free_minutes: int = 5,
    plan: str = "free",
) -> User:
    """A new user, signed in through the sign-in form; the client keeps the cookie."""
    user = await make_user(
        db,
        now=clock.now(),
        is_admin=is_admin,
        credit_usd=credit_usd,
        free_minutes=free_minutes,
        plan=plan,
    )
    response = await post_form(client, "/signin", {"email": user.email, "password": PASSWORD})
    assert response.status_code == 303, response.text
    return user
