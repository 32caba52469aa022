"""The authorization matrix, read from the app's own routes: every API route is public by name
or guarded; every guard refuses a key without its scope (and keys altogether where no scope
is named); tampered, expired and `alg: none` tokens get 401 everywhere; and every route that
takes the id of something of mine answers another user 404."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from sizzle.api.app import create_app
from sizzle.api.deps import get_principal
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.security import create_access_token
from sizzle.services.api_keys import SCOPES
from sizzle.state import AppState
from tests.helpers import add_paid_purchase, create_session, log_in, make_user

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
    """The scopes of each dependency that identifies the caller."""
    for sub in dependant.dependencies:
        if sub.call is get_principal:
            yield (*(dependant.parent_oauth_scopes or []), *(dependant.own_oauth_scopes or []))
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
    session_id = (await create_session(client, auth=owner_auth, tier="starter"))["id"]
    purchase_id = await add_paid_purchase(db, user_id=owner.id, now=clock.now())
    key_id = (
        await client.post(
            "/api/v1/keys", json={"name": "mine", "scopes": ["inference"]}, headers=owner_auth
        )
    ).json()["id"]
    ids = {"session_id": session_id, "purchase_id": purchase_id, "key_id": key_id}

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
    # and the owner still sees them
    assert (
        await client.get(f"/api/v1/sessions/{session_id}", headers=owner_auth)
    ).status_code == 200
