"""The issue's done-when, through the HTTP API with a fake clock."""

from __future__ import annotations

import httpx

from sizzle.clock import FakeClock
from sizzle.state import AppState
from tests.helpers import sign_up


async def test_starter_session_stopped_after_65_seconds_costs_two_free_minutes(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    created = await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=auth)
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    assert created.json()["status"] == "pending"

    await state.jobs.run_once()
    clock.advance(5)
    await state.jobs.run_once()
    ready = await client.get(f"/api/v1/sessions/{session_id}", headers=auth)
    assert ready.json()["status"] == "ready"

    started = await client.post(f"/api/v1/sessions/{session_id}/start", headers=auth)
    assert started.json()["status"] == "active"
    for _ in range(13):
        clock.advance(5)
        await state.jobs.meter()
    stopped = await client.post(f"/api/v1/sessions/{session_id}/stop", headers=auth)
    body = stopped.json()
    assert body["status"] == "terminated"
    assert body["charged_minutes"] == 2
    assert body["cost_usd"] == "0.30"
    assert body["active_seconds"] == 65

    me = (await client.get("/api/v1/auth/me", headers=auth)).json()
    assert me["free_minutes"] == 3
    assert me["balance_usd"] == "0.00"
