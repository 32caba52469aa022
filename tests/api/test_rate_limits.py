"""Rate limits: sign-in back-off per address and account, sign-ins per address, reset mails
per account and address, API requests per user, per key and per address; 429 with
Retry-After; in Redis, shared by two app instances."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.services.rate_limits import MemoryCounters
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import PASSWORD, assert_error, log_in, make_user
from tests.web.pages import csrf_of, sign_in

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


def from_address(state: AppState, ip: str) -> httpx.AsyncClient:
    """A client whose requests come from `ip`, as a proxy-aware server would see them."""
    transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False), client=(ip, 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://sizzle.test")


async def test_wrong_passwords_make_that_address_wait_longer_each_time(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    limits = {"sign_in_free_failures": 3, "sign_in_backoff_max_seconds": 8}
    async with app_with(**limits) as (_, client):
        for _ in range(3):  # the free ones; the third starts the back-off
            assert_error(await login(client, user.email, "wrong password"), 401)
        waits = []
        for _ in range(5):
            refused = await login(client, user.email)  # even the right password must wait
            assert_error(refused, 429, "rate_limited")
            waits.append(int(refused.headers["Retry-After"]))
            clock.advance(waits[-1])
            assert_error(await login(client, user.email, "wrong password"), 401)
        assert waits == [1, 2, 4, 8, 8]  # doubling, up to the most
        assert_error(await login(client, user.email.upper()), 429)  # however it is written
        clock.advance(8)
        assert (await login(client, user.email)).status_code == 200
        # the right password cleared the count: the free tries are back
        assert_error(await login(client, user.email, "wrong password"), 401)
        assert_error(await login(client, user.email, "wrong password"), 401)
        assert (await login(client, user.email)).status_code == 200


async def test_a_burst_of_guesses_sent_at_once_gets_no_more_than_the_free_tries(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    async with app_with(sign_in_free_failures=3) as (state, client):
        burst = await asyncio.gather(*(login(client, user.email, f"guess {n}") for n in range(10)))
        statuses = sorted(response.status_code for response in burst)
        assert statuses.count(401) <= 3 and set(statuses) <= {401, 429}, statuses
        async with from_address(state, "203.0.113.7") as home:  # the owner, clicking twice
            twice = await asyncio.gather(login(home, user.email), login(home, user.email))
            assert [response.status_code for response in twice] == [200, 200]


async def test_wrong_passwords_from_other_addresses_never_lock_the_owner_out(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    """Twelve addresses guessing (one of them on and on) leave the owner's sign-in and
    password reset alone."""
    owner = await make_user(db, now=clock.now())
    async with app_with() as (state, _):
        for n in range(12):
            async with from_address(state, f"198.51.100.{n}") as attacker:
                for _ in range(10 if n == 0 else 2):
                    response = await login(attacker, owner.email, "wrong password")
                    assert response.status_code in (401, 429)
        async with from_address(state, "198.51.100.0") as attacker:
            assert_error(await login(attacker, owner.email), 429)  # the guesser waits
        async with from_address(state, "203.0.113.7") as home:
            assert (await login(home, owner.email)).status_code == 200
            reset = await home.post("/api/v1/auth/password-reset", json={"email": owner.email})
            assert reset.status_code == 202


async def test_password_reset_mails_are_limited_on_their_own(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    other = await make_user(db, now=clock.now())
    limits = {"sign_in_free_failures": 1, "rate_limit_account_mail_per_account": "2/hour"}
    async with app_with(**limits) as (_, client):
        assert_error(await login(client, user.email, "wrong password"), 401)
        assert_error(await login(client, user.email), 429)  # this address must wait to sign in

        async def reset(email: str) -> httpx.Response:
            return await client.post("/api/v1/auth/password-reset", json={"email": email})

        assert (await reset(user.email)).status_code == 202  # ... but may ask for a reset
        assert (await reset(user.email.upper())).status_code == 202
        refused = await reset(user.email)
        assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 3600
        assert (await reset(other.email)).status_code == 202
        clock.advance(3600)
        assert (await reset(user.email)).status_code == 202


async def test_a_reset_link_works_from_an_address_out_of_sign_in_attempts(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    async with app_with(rate_limit_sign_in_per_ip="2/minute") as (state, client):
        for _ in range(2):
            assert_error(await login(client, user.email, "wrong password"), 401)
        assert_error(await login(client, user.email), 429)  # this address is out of tries
        mail = await state.account_links.password_reset_mail(user.email, base_url="https://s")
        assert mail is not None
        token = unquote(mail.body.split("token=")[1].split()[0])
        reset = await client.post(
            "/api/v1/auth/password-reset/confirm",
            json={"token": token, "password": "a brand new pass phrase"},
        )
        assert reset.status_code == 204, reset.text


async def test_a_wrong_current_password_counts_like_a_wrong_sign_in(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    async with app_with(sign_in_free_failures=1) as (_, client):
        auth = await log_in(client, email=user.email)
        wrong = await client.request(
            "DELETE", "/api/v1/account", json={"password": "wrong password"}, headers=auth
        )
        assert_error(wrong, 401)
        assert_error(await login(client, user.email), 429)


async def test_sign_in_attempts_are_limited_per_address(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    users = [await make_user(db, now=clock.now()) for _ in range(3)]
    async with app_with(rate_limit_sign_in_per_ip="2/minute") as (_, client):
        assert (await login(client, users[0].email)).status_code == 200
        assert (await login(client, users[1].email)).status_code == 200
        assert_error(await login(client, users[2].email), 429, "rate_limited")
        signup = await client.post(
            "/api/v1/auth/register",
            json={"email": "new@example.com", "password": PASSWORD, "accept_terms": True},
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
    async with app_with(sign_in_free_failures=1) as (state, _):
        transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
        async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as web:
            token = csrf_of(await web.get("/signin"))
            for password, expected in (("wrong password", 401), (PASSWORD, 429)):
                response = await web.post(
                    "/signin",
                    data={"email": user.email, "password": password, "csrf_token": token},
                )
                assert response.status_code == expected, response.text
            assert "Too many sign-in attempts" in response.text  # a sentence, and what next
            assert "then try again" in response.text and "Forgot your password" in response.text
            clock.advance(1)
            response = await web.post(
                "/signin", data={"email": user.email, "password": PASSWORD, "csrf_token": token}
            )
            assert response.status_code == 303


async def test_memory_windows_run_on_the_app_clock(app_with: App, clock: FakeClock) -> None:
    async with app_with(rate_limit_per_ip="2/minute") as (_, client):
        for _ in range(2):
            assert (await client.get("/api/v1/tiers")).status_code == 200
        assert_error(await client.get("/api/v1/tiers"), 429)
        clock.advance(59)
        assert_error(await client.get("/api/v1/tiers"), 429)
        clock.advance(1)
        assert (await client.get("/api/v1/tiers")).status_code == 200


async def test_memory_counts_forget_keys_gone_quiet(clock: FakeClock) -> None:
    counters = MemoryCounters(clock)
    assert await counters.hit("a", 1, 60) == 0
    assert await counters.hit("a", 1, 60) == 60
    await counters.block("b", 5)
    assert await counters.add("c", 1, 3600) == 1
    clock.advance(24 * 3600)
    assert await counters.hit("d", 1, 60) == 0  # a hit after a quiet minute sweeps the rest
    assert set(counters._windows) == {"d"}
    assert not counters._blocks and not counters._counts


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
        "sign_in_free_failures": 2,
        "rate_limit_account_mail_per_account": "3/minute",
    }
    async with app_with(**shared) as (first, one), app_with(**shared) as (second, two):
        await first.rate_limiter.reset()  # a clean count: another run may have used this db
        assert first.rate_limiter.shared and second.rate_limiter.shared
        assert_error(await login(one, user.email, "wrong password"), 401)
        assert_error(await login(two, user.email, "wrong password"), 401)
        refused = await login(one, user.email)  # the second failure, counted across both
        assert_error(refused, 429)
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        for client in (one, two, one):
            reset = await client.post("/api/v1/auth/password-reset", json={"email": user.email})
            assert reset.status_code == 202
        reset = await two.post("/api/v1/auth/password-reset", json={"email": user.email})
        assert_error(reset, 429)  # the fourth mail asked for, counted across both
        await first.rate_limiter.reset()


async def test_the_pages_document_reading_counts_against_the_account(
    app_with: App, db: Database, clock: FakeClock
) -> None:
    async with app_with(rate_limit_per_user="2/minute") as (_, browser):
        await sign_in(browser, db, clock=clock)
        token = {"X-CSRF-Token": csrf_of(await browser.get("/account"))}
        upload = {"file": ("notes.txt", b"some notes", "text/plain")}
        for _ in range(2):
            read = await browser.post("/attachments/extract", files=upload, headers=token)
            assert read.status_code == 200, read.text
        refused = await browser.post("/attachments/extract", files=upload, headers=token)
        assert refused.status_code == 429
