"""API keys: made with a sign-in token and shown once, stored as a hash, found by prefix,
scoped, accepted as a Bearer token or X-API-Key, refused at once when revoked or expired."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import ApiKey
from tests.helpers import assert_error, sign_up

KEYS = "/api/v1/keys"
ALL_SCOPES = ["sessions:read", "sessions:write", "billing:read", "inference"]


async def make_key(
    client: httpx.AsyncClient, auth: dict[str, str], scopes: list[str], **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        KEYS, json={"name": "laptop", "scopes": scopes, **fields}, headers=auth
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def as_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def test_a_key_is_shown_once_and_stored_only_as_a_hash(
    client: httpx.AsyncClient, db: Database
) -> None:
    auth = await sign_up(client)
    made = await make_key(client, auth, ["sessions:read"])
    key = made["key"]
    assert key.startswith("sz_live_") and len(key) > 50
    assert key.startswith(made["prefix"])
    assert made["scopes"] == ["sessions:read"] and made["revoked_at"] is None

    listed = (await client.get(KEYS, headers=auth)).json()
    assert [k["id"] for k in listed] == [made["id"]]
    assert "key" not in listed[0]
    async with db.read() as tx:
        row = await tx.scalar(select(ApiKey).where(ApiKey.id == made["id"]))
    assert row is not None
    stored = " ".join(str(v) for v in row.__dict__.values())
    assert key not in stored and key[len(made["prefix"]) :] not in stored
    assert len(row.key_hash) == 64


async def test_a_key_works_as_bearer_or_x_api_key_within_its_scopes(
    client: httpx.AsyncClient,
) -> None:
    auth = await sign_up(client)
    key = (await make_key(client, auth, ["sessions:read"]))["key"]
    for headers in (as_key(key), {"Authorization": f"Bearer {key}"}):
        assert (await client.get("/api/v1/sessions", headers=headers)).status_code == 200
        me = await client.get("/api/v1/auth/me", headers=headers)
        assert me.status_code == 200  # every key may ask whose it is
    refused = await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=as_key(key))
    assert_error(refused, 403, "insufficient_scope")
    assert "sessions:write" in refused.json()["error"]["message"]
    assert_error(await client.get("/api/v1/billing/balance", headers=as_key(key)), 403)
    assert_error(await client.get("/v1/models", headers=as_key(key)), 403, "insufficient_scope")


async def test_a_key_cannot_manage_keys_or_pay(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    key = (await make_key(client, auth, ALL_SCOPES))["key"]
    for method, path, body in (
        ("POST", KEYS, {"name": "x", "scopes": ["inference"]}),
        ("GET", KEYS, None),
        ("POST", "/api/v1/billing/checkout", {"package": "5"}),
        (
            "PUT",
            "/api/v1/billing/auto-top-up",
            {"enabled": False, "threshold_usd": "1", "package": "5"},
        ),
    ):
        response = await client.request(method, path, json=body, headers=as_key(key))
        assert_error(response, 403, "api_key_not_allowed")


async def test_a_full_key_drives_sessions_billing_and_inference(
    client: httpx.AsyncClient,
) -> None:
    auth = await sign_up(client)
    key = as_key((await make_key(client, auth, ALL_SCOPES))["key"])
    created = await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=key)
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    assert (await client.get(f"/api/v1/sessions/{session_id}", headers=key)).status_code == 200
    assert (await client.get("/api/v1/billing/balance", headers=key)).status_code == 200
    assert (await client.get("/v1/models", headers=key)).json()["data"] == []
    stopped = await client.post(f"/api/v1/sessions/{session_id}/stop", headers=key)
    assert stopped.status_code == 200, stopped.text


async def test_revoked_expired_and_tampered_keys_get_401(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    made = await make_key(client, auth, ["sessions:read"])
    key = made["key"]
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert_error(
        await client.get("/api/v1/sessions", headers=as_key(tampered)), 401, "invalid_api_key"
    )
    unknown = "sz_live_" + "x" * 55
    assert_error(
        await client.get("/api/v1/sessions", headers=as_key(unknown)), 401, "invalid_api_key"
    )
    assert_error(await client.get("/api/v1/sessions", headers=as_key("sz_live_")), 401)

    revoked = await client.delete(f"{KEYS}/{made['id']}", headers=auth)
    assert revoked.status_code == 204
    assert_error(await client.get("/api/v1/sessions", headers=as_key(key)), 401, "api_key_revoked")
    assert (await client.get(KEYS, headers=auth)).json()[0]["revoked_at"] is not None

    expiring = await make_key(
        client, auth, ["sessions:read"], expires_at=(clock.now() + timedelta(hours=1)).isoformat()
    )
    assert (
        await client.get("/api/v1/sessions", headers=as_key(expiring["key"]))
    ).status_code == 200
    clock.advance(3600)
    assert_error(
        await client.get("/api/v1/sessions", headers=as_key(expiring["key"])),
        401,
        "api_key_expired",
    )


async def test_another_users_key_is_not_found(client: httpx.AsyncClient) -> None:
    mine = await sign_up(client)
    theirs = await sign_up(client)
    made = await make_key(client, theirs, ["sessions:read"])
    assert_error(await client.delete(f"{KEYS}/{made['id']}", headers=mine), 404)
    assert (await client.get(KEYS, headers=mine)).json() == []


async def test_last_used_is_kept_to_the_minute(client: httpx.AsyncClient, clock: FakeClock) -> None:
    auth = await sign_up(client)
    made = await make_key(client, auth, ["sessions:read"])
    assert made["last_used_at"] is None
    await client.get("/api/v1/sessions", headers=as_key(made["key"]))
    first = (await client.get(KEYS, headers=auth)).json()[0]["last_used_at"]
    assert first is not None
    clock.advance(30)
    await client.get("/api/v1/sessions", headers=as_key(made["key"]))
    assert (await client.get(KEYS, headers=auth)).json()[0]["last_used_at"] == first
    clock.advance(31)
    await client.get("/api/v1/sessions", headers=as_key(made["key"]))
    assert (await client.get(KEYS, headers=auth)).json()[0]["last_used_at"] != first


async def test_bad_key_requests_are_422(client: httpx.AsyncClient, clock: FakeClock) -> None:
    auth = await sign_up(client)
    for body, code in (
        ({"name": "x", "scopes": ["root"]}, "bad_scopes"),
        ({"name": "x", "scopes": []}, None),
        ({"name": "", "scopes": ["inference"]}, None),
        (
            {"name": "x", "scopes": ["inference"], "expires_at": "2020-01-01T00:00:00Z"},
            "bad_expiry",
        ),
        ({"name": "x", "scopes": ["inference"], "expires_at": "2030-01-01T00:00:00"}, None),
        ({"name": "x\x00", "scopes": ["inference"]}, None),
    ):
        assert_error(await client.post(KEYS, json=body, headers=auth), 422, code)


async def test_a_credential_longer_than_any_sizzle_makes_is_refused_unread(
    client: httpx.AsyncClient,
) -> None:
    auth = await sign_up(client)
    key = (await make_key(client, auth, ["sessions:read"]))["key"]
    too_long = key + "x" * 200
    for path in ("/api/v1/sessions", "/api/v1/sessions/" + "0" * 32, "/v1/models"):
        for headers in (as_key(too_long), {"Authorization": f"Bearer {too_long}"}):
            assert_error(await client.get(path, headers=headers), 401, "invalid_token")
    assert (await client.get("/api/v1/sessions", headers=as_key(key))).status_code == 200
