"""The authorization matrix, read from the app's own routes: every API route is public by name
or guarded; every guard refuses a key without its scope (and keys altogether where no scope
is named); tampered, expired and `alg: none` tokens get 401 everywhere, and so do a sign-in
ended by a password change and a revoked key, inference included; a suspended account is
refused (403) on every route, by token and by key, and signed out of every page; and every
route that takes the id of something of mine answers another user 404."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncssh
import httpx
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import select

from sizzle.api.app import create_app
from sizzle.api.deps import CredentialScheme
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import Notification, User
from sizzle.security import create_access_token
from sizzle.services import accounts
from sizzle.services.api_keys import SCOPES
from sizzle.services.notifications import Kind, notify
from sizzle.state import AppState
from sizzle.web.deps import signed_in_user
from sizzle.web.security import SESSION_COOKIE
from tests.helpers import (
    PASSWORD,
    add_paid_purchase,
    assert_error,
    create_session,
    log_in,
    make_user,
)

# Routes anyone may call (the webhook checks Stripe's signature instead).
PUBLIC = {
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/verify-email"),
    ("POST", "/api/v1/auth/password-reset"),
    ("POST", "/api/v1/auth/password-reset/confirm"),
    ("GET", "/api/v1/tiers"),
    ("GET", "/api/v1/availability"),
    ("GET", "/api/v1/models"),
    ("GET", "/api/v1/models/recommend"),
    ("GET", "/api/v1/models/{slug}"),
    ("GET", "/api/v1/billing/packages"),
    ("POST", "/api/v1/billing/webhook"),
}
KEY_CODES = {"insufficient_scope", "api_key_not_allowed"}


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if hasattr(route, "original_router"):  # an included router
            yield from _routes(route.original_router.routes)
        elif isinstance(route, APIRoute):
            yield route


def _guards(dependant: Dependant) -> Iterator[tuple[str, ...]]:
    """The scopes of each dependency that reads the caller's credential (those of its guard,
    or its own where a route asks for the credential directly)."""
    for sub in dependant.dependencies:
        if isinstance(sub.call, CredentialScheme):
            yield (
                *(dependant.parent_oauth_scopes or []),
                *(dependant.own_oauth_scopes or []),
                *(sub.own_oauth_scopes or []),
            )
        yield from _guards(sub)


def api_routes(state: AppState) -> list[tuple[str, str, tuple[str, ...] | None]]:
    """(method, path, scopes) of every API route; scopes None for a public one, () for one
    that takes sign-in tokens only."""
    found = []
    for route in _routes(create_app(state=state, run_jobs=False).routes):
        if not route.path.startswith(("/api/", "/v1/")):
            continue
        guards = list(_guards(route.dependant))
        scopes = tuple(sorted({s for g in guards for s in g})) if guards else None
        for method in route.methods:
            found.append((method, route.path, scopes))
    return sorted(found)


def concrete(path: str, ids: dict[str, str] | None = None) -> str:
    ids = ids or {}
    return re.sub(
        r"\{(\w+)\}",
        lambda m: ids.get(m.group(1), "2026-03" if m.group(1) == "month" else "0" * 32),
        path,
    )


async def key_with(client: httpx.AsyncClient, auth: dict[str, str], scopes: list[str]) -> str:
    made = await client.post(
        "/api/v1/keys", json={"name": "matrix", "scopes": scopes}, headers=auth
    )
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


def test_every_api_route_is_public_by_name_or_guarded(state: AppState) -> None:
    for method, path, scopes in api_routes(state):
        if scopes is None:
            assert (method, path) in PUBLIC, f"{method} {path} has no guard"
        else:
            assert (method, path) not in PUBLIC, f"{method} {path} is listed public but guarded"
            assert set(scopes) <= {*SCOPES, "identity"}, scopes


async def test_a_key_without_the_scope_is_refused_on_every_route(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(db, now=clock.now(), is_admin=True)
    auth = await log_in(client, email=user.email)
    keys: dict[tuple[str, ...], str] = {}
    checked = 0
    for method, path, scopes in api_routes(state):
        if scopes is None or scopes == ("identity",):
            continue  # public, or open to any key (whose key is it)
        if not scopes:
            lacking = tuple(sorted(SCOPES))  # every scope there is, and still refused
        else:
            lacking = tuple(sorted(set(SCOPES) - set(scopes)))
        if lacking not in keys:
            keys[lacking] = await key_with(client, auth, list(lacking))
        response = await client.request(
            method, concrete(path), json={}, headers={"X-API-Key": keys[lacking]}
        )
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] in KEY_CODES, (method, path)
        checked += 1
    assert checked > 25


async def test_with_its_scope_a_key_gets_past_every_guard(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(db, now=clock.now())
    auth = await log_in(client, email=user.email)
    for method, path, scopes in api_routes(state):
        if not scopes or method == "POST" and path == "/api/v1/sessions":
            continue  # sign-in only; creating a session is exercised elsewhere
        key = await key_with(client, auth, [s for s in scopes if s != "identity"] or ["inference"])
        response = await client.request(method, concrete(path), json={}, headers={"X-API-Key": key})
        assert response.status_code not in (401, 403), (method, path, response.text)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_bad_tokens_get_401_on_every_guarded_route(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(db, now=clock.now(), is_admin=True)
    secret = state.settings.resolved_secret_key
    good = create_access_token(user.id, secret=secret, now=clock.now(), lifetime=timedelta(hours=1))
    expired = create_access_token(
        user.id, secret=secret, now=clock.now() - timedelta(hours=2), lifetime=timedelta(hours=1)
    )
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    forged_claims = good.split(".")
    forged_claims[1] = _b64({"sub": "someone-else", "exp": 4_102_444_800})
    alg_none = (
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': user.id, 'exp': 4_102_444_800})}."
    )
    guarded = [(m, p) for m, p, scopes in api_routes(state) if scopes is not None]
    for token in (expired, tampered, ".".join(forged_claims), alg_none, "not-a-token"):
        for method, path in guarded:
            response = await client.request(
                method, concrete(path), json={}, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401, (token[:20], method, path, response.text)
    for method, path in guarded:  # and nothing at all
        assert (await client.request(method, concrete(path), json={})).status_code == 401


async def test_another_user_gets_404_for_my_things(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    owner = await make_user(db, now=clock.now(), credit_usd="5")
    owner_auth = await log_in(client, email=owner.email)
    # queued first: the free plan's one session at a time is checked when queueing, too
    queue_id = (
        await client.post("/api/v1/launch-queue", json={"tier": "pro"}, headers=owner_auth)
    ).json()["id"]
    session_id = (await create_session(client, auth=owner_auth, tier="starter"))["id"]
    purchase_id = await add_paid_purchase(db, user_id=owner.id, now=clock.now())
    key_id = (
        await client.post(
            "/api/v1/keys", json={"name": "mine", "scopes": ["inference"]}, headers=owner_auth
        )
    ).json()["id"]
    ssh_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    ssh_key_id = (
        await client.post(
            "/api/v1/ssh-keys", json={"name": "mine", "public_key": ssh_key}, headers=owner_auth
        )
    ).json()["id"]
    conversation_id = (
        await client.post(
            "/api/v1/conversations", json={"session_id": session_id}, headers=owner_auth
        )
    ).json()["id"]
    async with db.transaction() as tx:
        await notify(
            tx,
            user_id=owner.id,
            kind=Kind.SESSION_READY,
            key=f"session_ready:{session_id}",
            title="Ready",
            body="Your GPU is ready.",
            now=clock.now(),
        )
        notification_id = await tx.scalar(select(Notification.id))
    ids = {
        "session_id": session_id,
        "purchase_id": purchase_id,
        "key_id": key_id,
        "ssh_key_id": ssh_key_id,
        "notification_id": str(notification_id),
        "queue_id": queue_id,
        "conversation_id": conversation_id,
    }

    other = await make_user(db, now=clock.now(), credit_usd="5")
    other_auth = await log_in(client, email=other.email)
    checked = 0
    for method, path, scopes in api_routes(state):
        names = set(re.findall(r"\{(\w+)\}", path))
        if scopes is None or not names & set(ids) or path.startswith("/api/v1/admin"):
            continue
        response = await client.request(method, concrete(path, ids), json={}, headers=other_auth)
        assert response.status_code == 404, (method, path, response.text)
        checked += 1
    assert checked >= 10
    # ids in a body, too: marking another user's notification read
    marking = {"ids": [ids["notification_id"]]}
    response = await client.post("/api/v1/notifications/read", json=marking, headers=other_auth)
    assert response.status_code == 404, response.text
    # and the owner still sees them
    assert (
        await client.get(f"/api/v1/sessions/{session_id}", headers=owner_auth)
    ).status_code == 200
    assert (await client.get("/api/v1/ssh-keys", headers=owner_auth)).json()["total"] == 1
    assert (await client.get("/api/v1/conversations", headers=owner_auth)).json()["total"] == 1
    assert (await client.get("/api/v1/notifications", headers=owner_auth)).json()["unread"] == 1
    assert (await client.get(f"/api/v1/launch-queue/{queue_id}", headers=owner_auth)).json()[
        "status"
    ] == "waiting"


async def _change_password(db: Database, user_id: str, *, now: Any) -> None:
    async with db.transaction() as tx:
        user = await tx.get(User, user_id)
        assert user is not None
        await accounts.change_password(
            tx, user, current=PASSWORD, new="a brand new pass phrase", now=now
        )


async def _suspend(db: Database, user_id: str, *, now: Any) -> None:
    operator = await make_user(db, now=now, is_admin=True)
    async with db.transaction() as tx:
        user = await tx.get(User, user_id)
        assert user is not None
        accounts.set_suspended(tx, user, suspended=True, operator=operator, now=now)


def _guarded(state: AppState) -> list[tuple[str, str]]:
    routes = [(m, p) for m, p, scopes in api_routes(state) if scopes is not None]
    assert {
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
    } <= set(routes)
    return routes


async def test_a_sign_in_ended_by_a_password_change_gets_401_on_every_route(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(db, now=clock.now(), is_admin=True)
    auth = await log_in(client, email=user.email)
    clock.advance(5)
    await _change_password(db, user.id, now=clock.now())
    for method, path in _guarded(state):
        response = await client.request(method, concrete(path), json={}, headers=auth)
        assert_error(response, 401, "token_revoked")


async def test_a_revoked_key_gets_401_on_every_route(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(db, now=clock.now(), is_admin=True)
    auth = await log_in(client, email=user.email)
    made = await client.post(
        "/api/v1/keys", json={"name": "gone", "scopes": sorted(SCOPES)}, headers=auth
    )
    revoked = await client.delete(f"/api/v1/keys/{made.json()['id']}", headers=auth)
    assert revoked.status_code == 204
    for method, path in _guarded(state):
        response = await client.request(
            method, concrete(path), json={}, headers={"X-API-Key": made.json()["key"]}
        )
        assert_error(response, 401, "api_key_revoked")


async def test_a_suspended_account_gets_403_on_every_route_by_token_and_by_key(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(db, now=clock.now(), is_admin=True)
    auth = await log_in(client, email=user.email)
    key = {"X-API-Key": await key_with(client, auth, sorted(SCOPES))}
    await _suspend(db, user.id, now=clock.now())
    for method, path in _guarded(state):
        for headers in (auth, key):
            response = await client.request(method, concrete(path), json={}, headers=headers)
            assert_error(response, 403, "account_suspended")


def _page_routes(state: AppState) -> list[str]:
    """The GET pages that need someone signed in."""

    def needs_sign_in(dependant: Dependant) -> bool:
        return any(s.call is signed_in_user or needs_sign_in(s) for s in dependant.dependencies)

    app = create_app(state=state, run_jobs=False)
    return sorted(
        route.path
        for route in _routes(app.routes)
        if "GET" in route.methods and needs_sign_in(route.dependant)
    )


async def test_an_ended_sign_in_or_a_suspended_account_is_sent_to_sign_in_on_every_page(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    secret = state.settings.resolved_secret_key
    revoked = await make_user(db, now=clock.now(), is_admin=True)
    suspended = await make_user(db, now=clock.now(), is_admin=True)
    cookies = {
        user.id: create_access_token(
            user.id, secret=secret, now=clock.now(), lifetime=timedelta(hours=1)
        )
        for user in (revoked, suspended)
    }
    clock.advance(5)
    await _change_password(db, revoked.id, now=clock.now())
    await _suspend(db, suspended.id, now=clock.now())
    pages = _page_routes(state)
    assert len(pages) > 10
    for path in pages:
        for token in cookies.values():
            response = await client.get(
                concrete(path), headers={"Cookie": f"{SESSION_COOKIE}={token}"}
            )
            assert response.status_code == 303, (path, response.text)
            assert response.headers["location"].startswith("/signin"), path
