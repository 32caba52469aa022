"""Keyword-only helpers shared by tests."""

from __future__ import annotations

import asyncio
import itertools
import mailbox
import re
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import uvicorn

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import Purchase, User
from sizzle.domain.money import usd_to_micros
from sizzle.legal import library
from sizzle.security import fingerprint, make_account_token
from sizzle.services import accounts
from sizzle.services.account_links import VERIFY_EMAIL
from sizzle.state import AppState

_emails = itertools.count(1)
PASSWORD = "correct horse battery"
TEST_SECRET = "test-secret-key-that-is-long-enough"
# The token the tests give an Ollama node behind a proxy (the suite's logs are scanned for it).
NODE_TOKEN = "n0de-t0ken-for-the-proxy-0123"


def fresh_email() -> str:
    return f"user{next(_emails)}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_up(
    client: httpx.AsyncClient, *, email: str | None = None, confirm: bool = True
) -> dict[str, str]:
    """Register a fresh user (the legal documents accepted) and, unless `confirm` is False,
    confirm the address as its mail's link would (which gives the free minutes); the
    Authorization header for them."""
    email = email or fresh_email()
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "accept_terms": True},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    if confirm:
        await confirm_address(client, user_id=body["user"]["id"], email=body["user"]["email"])
    return bearer(body["access_token"])


def confirmation_token(user_id: str, email: str, *, secret: str = TEST_SECRET) -> str:
    """The token of the link the confirmation mail carries (as services/account_links.py
    makes it), for tests that do not read the mail."""
    return make_account_token(
        VERIFY_EMAIL,
        user_id,
        fingerprint=fingerprint(VERIFY_EMAIL, email, ""),
        secret=secret,
        now=datetime.now(UTC),
        lifetime=timedelta(days=3650),
    )


def mailed_token(state: AppState, address: str, path: str) -> str:
    """The token of the newest link to `path` mailed to `address`, from the mail file (where
    mail goes without SMTP)."""
    mails = mailbox.mbox(state.settings.resolved_mail_file)
    bodies = [
        str(message.get_payload(decode=True), "utf-8")
        for message in mails
        if message["To"] == address
    ]
    assert bodies, f"no mail to {address}"
    found = re.search(rf"{re.escape(path)}\?token=(\S+)", bodies[-1])
    assert found, bodies[-1]
    return unquote(found.group(1))


async def confirm_address(
    client: httpx.AsyncClient, *, user_id: str, email: str, secret: str = TEST_SECRET
) -> None:
    """Confirm a user's address through the API, as following the mailed link does."""
    response = await client.post(
        "/api/v1/auth/verify-email",
        json={"token": confirmation_token(user_id, email, secret=secret)},
    )
    assert response.status_code == 204, response.text


async def log_in(
    client: httpx.AsyncClient, *, email: str, password: str = PASSWORD
) -> dict[str, str]:
    """Sign in through the API; the Authorization header."""
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


async def make_user(
    db: Database,
    *,
    now: datetime,
    email: str | None = None,
    plan: str = "free",
    free_minutes: int = 5,
    credit_usd: str = "0",
    is_admin: bool = False,
    accepted_terms: bool = True,
) -> User:
    """A user made straight in the database, with the free minutes and credit asked for, who
    accepted the default legal documents unless `accepted_terms` is False."""
    async with db.transaction() as tx:
        user = await accounts.create_user(
            tx,
            email=email or fresh_email(),
            password=PASSWORD,
            now=now,
            free_minutes=free_minutes,
            plan=plan,
            is_admin=is_admin,
            terms_version=library(None).acceptance_version() if accepted_terms else None,
        )
        if usd_to_micros(credit_usd):
            await accounts.grant_credits(
                tx, user, usd_to_micros(credit_usd), now=now, granted_by="tests"
            )
    return user


async def signed_in_user(
    client: httpx.AsyncClient,
    db: Database,
    *,
    clock: FakeClock,
    plan: str = "free",
    free_minutes: int = 5,
    credit_usd: str = "0",
    is_admin: bool = False,
) -> dict[str, str]:
    """`make_user`, then sign in through the API; the Authorization header."""
    user = await make_user(
        db,
        now=clock.now(),
        plan=plan,
        free_minutes=free_minutes,
        credit_usd=credit_usd,
        is_admin=is_admin,
    )
    return await log_in(client, email=user.email)


async def grant(db: Database, *, email: str, usd: str, now: datetime) -> None:
    async with db.transaction() as tx:
        user = await accounts.get_user_by_email(tx, email)
        await accounts.grant_credits(tx, user, usd_to_micros(usd), now=now, granted_by="tests")


async def add_paid_purchase(db: Database, *, user_id: str, now: datetime, usd: str = "5") -> str:
    """A paid purchase of the `usd` package, made straight in the database (no ledger entry:
    the credit is not granted); its id."""
    purchase_id = uuid.uuid4().hex
    async with db.transaction() as tx:
        tx.add(
            Purchase(
                id=purchase_id,
                user_id=user_id,
                package=usd,
                paid_micros=usd_to_micros(usd),
                credit_micros=usd_to_micros(usd),
                status="paid",
                created_at=now,
                paid_at=now,
            )
        )
    return purchase_id


async def me(client: httpx.AsyncClient, *, auth: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/api/v1/auth/me", headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


async def create_session(
    client: httpx.AsyncClient, *, auth: dict[str, str], tier: str = "starter", **fields: Any
) -> dict[str, Any]:
    """POST /sessions, expecting 201; the session JSON."""
    response = await client.post("/api/v1/sessions", json={"tier": tier, **fields}, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


async def get_session(
    client: httpx.AsyncClient, *, auth: dict[str, str], session_id: str
) -> dict[str, Any]:
    response = await client.get(f"/api/v1/sessions/{session_id}", headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


async def act(
    client: httpx.AsyncClient, *, auth: dict[str, str], session_id: str, action: str
) -> httpx.Response:
    """POST /sessions/{id}/{action}: start, pause, resume or stop."""
    return await client.post(f"/api/v1/sessions/{session_id}/{action}", headers=auth)


async def launch_ready_session(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    *,
    auth: dict[str, str],
    tier: str = "starter",
    max_minutes: int | None = None,
    idle_minutes: int | str | None = "default",
) -> str:
    """Create a session and run the jobs until its GPU is ready; its id. `idle_minutes`:
    the idle limit asked for (None: never), or "default": none asked for."""
    fields: dict[str, Any] = {} if max_minutes is None else {"max_minutes": max_minutes}
    if idle_minutes != "default":
        fields["idle_minutes"] = idle_minutes
    session_id = (await create_session(client, auth=auth, tier=tier, **fields))["id"]
    await state.jobs.run_once()
    clock.advance(state.settings.demo_provision_seconds)
    await state.jobs.run_once()
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "ready"
    return session_id


async def launch_active_session(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    *,
    auth: dict[str, str],
    tier: str = "starter",
    max_minutes: int | None = None,
    idle_minutes: int | str | None = "default",
) -> str:
    """A ready session, started: billing runs from the clock's current time."""
    session_id = await launch_ready_session(
        client,
        state,
        clock,
        auth=auth,
        tier=tier,
        max_minutes=max_minutes,
        idle_minutes=idle_minutes,
    )
    started = await act(client, auth=auth, session_id=session_id, action="start")
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "active"
    return session_id


async def run_for(state: AppState, clock: FakeClock, *, seconds: int, step: int = 5) -> None:
    """Move the clock `seconds` forward in steps, metering after each one."""
    for _ in range(seconds // step):
        clock.advance(step)
        await state.jobs.meter()
    if seconds % step:
        clock.advance(seconds % step)
        await state.jobs.meter()


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is `{"error": {"code", "message"}}` with `status`; the error object."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


@asynccontextmanager
async def serve_here(app: Any) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a loopback port in this event loop; yields its base URL.

    Unlike an in-process transport, real HTTP shows whether a response streams."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped before it started")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
