"""Operator endpoints: admins only; they see which provider runs each session."""

from __future__ import annotations

import httpx
import pytest

from sizzle.db.database import Database
from sizzle.errors import ProviderUnavailable
from sizzle.services import accounts
from sizzle.state import AppState
from tests.helpers import PASSWORD, sign_up


async def admin_headers(client: httpx.AsyncClient, state: AppState, db: Database) -> dict[str, str]:
    async with db.transaction() as tx:
        await accounts.create_user(
            tx,
            email="ops@example.com",
            password=PASSWORD,
            is_admin=True,
            now=state.clock.now(),
            free_minutes=0,
        )
    login = await client.post(
        "/api/v1/auth/login", json={"email": "ops@example.com", "password": PASSWORD}
    )
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_users_may_not_see_operator_views(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    for path in ("/api/v1/admin/sessions", "/api/v1/admin/providers"):
        response = await client.get(path, headers=auth)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


async def test_admin_sees_every_session_with_its_provider(
    client: httpx.AsyncClient, state: AppState, db: Database
) -> None:
    user = await sign_up(client)
    await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=user)
    await state.jobs.housekeep()
    assert (await client.get("/api/v1/sessions", headers=user)).json()["items"][0][
        "provider"
    ] is None
    page = (
        await client.get("/api/v1/admin/sessions", headers=await admin_headers(client, state, db))
    ).json()
    assert page["total"] == 1
    assert page["items"][0]["provider"] == "demo"


async def test_admin_sees_provider_health(
    client: httpx.AsyncClient, state: AppState, db: Database
) -> None:
    await client.get("/api/v1/availability")  # the orchestrator asks every provider once
    response = await client.get(
        "/api/v1/admin/providers", headers=await admin_headers(client, state, db)
    )
    (demo,) = response.json()
    assert demo["name"] == "demo"
    assert demo["label"] == "Demo (simulated GPUs, no real hardware)"
    assert (demo["healthy"], demo["breaker"], demo["disabled_reason"]) == (True, "closed", None)
    assert demo["offer_count"] == 1
    assert demo["latency_ms"] >= 0


async def test_admin_sees_whether_the_reconciler_can_list_a_provider(
    client: httpx.AsyncClient, state: AppState, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await admin_headers(client, state, db)
    (before,) = (await client.get("/api/v1/admin/providers", headers=headers)).json()
    assert before["reconciler"] is None  # no round yet

    async def refused() -> list:
        raise ProviderUnavailable("demo: HTTP 401 invalid API key")

    monkeypatch.setattr(state.providers["demo"], "list_instances", refused)
    for _ in range(3):
        await state.jobs.reconcile_now()
    (demo,) = (await client.get("/api/v1/admin/providers", headers=headers)).json()
    listing = demo["reconciler"]
    assert (listing["failed_rounds"], listing["blind"]) == (3, True)
    assert listing["last_error"] == "demo: HTTP 401 invalid API key"
    assert listing["last_listed_at"] is None and listing["failing_since"] is not None


async def test_admin_sees_a_sessions_attempts_and_events(
    client: httpx.AsyncClient, state: AppState, db: Database
) -> None:
    user = await sign_up(client)
    session_id = (await client.post("/api/v1/sessions", json={"tier": "pro"}, headers=user)).json()[
        "id"
    ]
    await state.jobs.housekeep()
    detail = (
        await client.get(
            f"/api/v1/admin/sessions/{session_id}", headers=await admin_headers(client, state, db)
        )
    ).json()
    (attempt,) = detail["attempts"]
    assert (attempt["provider"], attempt["outcome"], attempt["error"]) == ("demo", "launched", None)
    assert [e["to_status"] for e in detail["events"]] == ["provisioning"]
    assert (
        await client.get(f"/api/v1/admin/sessions/{session_id}", headers=user)
    ).status_code == 403
