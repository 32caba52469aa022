"""Rate limits: sign-in attempts per account and per address, API requests per user, per key
and per address; 429 with Retry-After; in Redis, shared by two app instances."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import PASSWORD, assert_error, log_in, make_user

REDIS = ("127.0.0.1", 6379)

App = Callable[..., AbstractAsyncContextManager[tuple[AppState, httpx.AsyncClient]]]


@pytest.fixture
def app_with(settings: Settings, clock: FakeClock, db: Database) -> App:
    @asynccontextmanager
    async def make(**limits: Any) -> AsyncIterator[tuple[AppState, httpx.AsyncClient]]:
        state = AppState.build(settings.model_copy(update=limits), clock=clock, db=db)
        transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://sizzle.test") as c:
            yield state, c

    return make


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_sign_in_attempts_are_limited_per_account(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    other = await make_user(db, now=clock.now())
    async with app_with(rate_limit_sign_in_per_account="3/minute") as (_, client):
        for _ in range(3):
            assert_error(await login(client, user.email, "wrong password"), 401)
        refused = await login(client, user.email)  # even the right password, now
        assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert (await login(client, other.email)).status_code == 200
        # the same account however its email is written
        assert_error(await login(client, user.email.upper()), 429)


async def test_sign_in_attempts_are_limited_per_address(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    users = [await make_user(db, now=clock.now()) for _ in range(3)]
    async with app_with(rate_limit_sign_in_per_ip="2/minute") as (_, client):
        assert (await login(client, users[0].email)).status_code == 200
        assert (await login(client, users[1].email)).status_code == 200
        assert_error(await login(client, users[2].email), 429, "rate_limited")
        signup = await client.post(
            "/api/v1/auth/register", json={"email": "new@example.com", "password": PASSWORD}
        )
        assert_error(signup, 429)


async def test_api_requests_are_limited_per_user_and_per_key(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    async with app_with(rate_limit_per_user="6/minute", rate_limit_per_key="2/minute") as (
        _,
        client,
    ):
        me = await log_in(client, email=(await make_user(db, now=clock.now())).email)
        you = await log_in(client, email=(await make_user(db, now=clock.now())).email)
        made = await client.post(
            "/api/v1/keys", json={"name": "k", "scopes": ["sessions:read"]}, headers=me
        )  # request 1 of mine
        key = {"X-API-Key": made.json()["key"]}
        for _ in range(2):  # 2 and 3
            assert (await client.get("/api/v1/sessions", headers=key)).status_code == 200
        over_key = await client.get("/api/v1/sessions", headers=key)  # the key's third
        assert_error(over_key, 429, "rate_limited")
        assert "API key" in over_key.json()["error"]["message"]
        for _ in range(2):  # 5 and 6 (the refused one counted for the user too)
            assert (await client.get("/api/v1/sessions", headers=me)).status_code == 200
        assert_error(await client.get("/api/v1/sessions", headers=me), 429)
        assert (await client.get("/api/v1/sessions", headers=you)).status_code == 200


async def test_api_requests_are_limited_per_address_public_ones_too(app_with: App) -> None:
    async with app_with(rate_limit_per_ip="3/minute") as (_, client):
        for _ in range(3):
            assert (await client.get("/api/v1/tiers")).status_code == 200
        refused = await client.get("/api/v1/tiers")
        assert_error(refused, 429)
        assert "Retry-After" in refused.headers
        assert (await client.get("/healthz")).status_code == 200  # health checks are not limited


async def test_the_sign_in_form_says_to_wait(app_with: App, db: Database, clock: FakeClock) -> None:
    from tests.web.pages import csrf_of

    user = await make_user(db, now=clock.now())
    async with app_with(rate_limit_sign_in_per_account="1/minute") as (state, _):
        transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
        async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as web:
            token = csrf_of(await web.get("/signin"))
            for expected in (303, 429):
                response = await web.post(
                    "/signin",
                    data={"email": user.email, "password": PASSWORD, "csrf_token": token},
                )
                assert response.status_code == expected, response.text
            assert "too many sign-in attempts" in response.text


def _redis_up() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(
    not _redis_up() and not os.environ.get("SIZZLE_REQUIRE_REDIS"),
    reason="needs Redis on 127.0.0.1:6379 (.ci/run starts it)",
)
async def test_in_redis_two_app_instances_share_the_limits(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    shared = {
        "redis_url": "redis://127.0.0.1:6379/15",
        "rate_limit_sign_in_per_account": "3/minute",
    }
    async with app_with(**shared) as (first, one), app_with(**shared) as (second, two):
        await first.rate_limiter.reset()  # a clean count: another run may have used this db
        assert first.rate_limiter.shared and second.rate_limiter.shared
        assert (await login(one, user.email)).status_code == 200
        assert (await login(two, user.email)).status_code == 200
        assert (await login(one, user.email)).status_code == 200
        assert_error(await login(two, user.email), 429)  # the fourth, counted across both
        await first.rate_limiter.reset()
