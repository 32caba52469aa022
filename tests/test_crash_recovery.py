"""A real `sizzle serve` is killed (SIGKILL) while sessions run, and restarted later.

The GPUs were held all through the downtime, so that time is billed when the server comes
back: each session ends up charged ceil(active / 60 s) minutes, minutes 1..n exactly once.
Only the file clock decides billing time; the real waits below just poll for the server.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sizzle.db.database import Database
from tests.helpers import PASSWORD, confirm_address
from tests.processes import SizzleProcesses

pytestmark = pytest.mark.slow

T0 = 1_772_366_400  # 2026-03-01 12:00 UTC, in epoch seconds
BEFORE_CRASH = 150  # seconds active when the server is killed: 3 minutes charged
AFTER_RESTART = 430  # seconds active when it is back: 8 minutes in all
FREE_MINUTES = 100
BOSS_CREDIT = "20"
SETTINGS = {
    "SIZZLE_METER_INTERVAL_SECONDS": "0.2",
    "SIZZLE_JOBS_INTERVAL_SECONDS": "0.1",
    "SIZZLE_DEMO_PROVISION_SECONDS": "0",
    "SIZZLE_FREE_MINUTES": str(FREE_MINUTES),
}


@pytest.fixture
async def sizzle(db: Database, database_url: str, tmp_path: Path) -> AsyncIterator[SizzleProcesses]:
    """The `db` fixture has emptied the PostgreSQL test database (a SQLite file is fresh)."""
    with SizzleProcesses(tmp_path, database_url, **SETTINGS) as processes:
        processes.set_clock(T0)
        yield processes


async def _json(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def test_downtime_is_billed_once_after_a_crash(sizzle: SizzleProcesses) -> None:
    sizzle.cli("db", "upgrade")
    sizzle.cli(
        "admin",
        "create-user",
        "boss@example.com",
        "--password",
        PASSWORD,
        "--plan",
        "enterprise",
        SIZZLE_FREE_MINUTES="0",
    )
    sizzle.cli("admin", "grant-credits", "boss@example.com", BOSS_CREDIT)

    base_url = await sizzle.serve("server")
    auth: dict[str, dict[str, str]] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        for name in ("alice", "bob"):  # free plan: one session each, on free minutes
            body = await _json(
                await http.post(
                    "/api/v1/auth/register",
                    json={
                        "email": f"{name}@example.com",
                        "password": PASSWORD,
                        "accept_terms": True,
                    },
                ),
                201,
            )
            # the free minutes come with the confirmed address
            await confirm_address(http, user_id=body["user"]["id"], email=body["user"]["email"])
            auth[name] = {"Authorization": f"Bearer {body['access_token']}"}
        token = await _json(
            await http.post(
                "/api/v1/auth/login", json={"email": "boss@example.com", "password": PASSWORD}
            )
        )
        auth["boss"] = {"Authorization": f"Bearer {token['access_token']}"}

        plan = [("alice", "starter"), ("bob", "pro"), ("boss", "starter"), ("boss", "beast")]
        owned: list[tuple[str, str]] = []  # (owner, session id)
        for owner, tier in plan:
            created = await http.post("/api/v1/sessions", json={"tier": tier}, headers=auth[owner])
            owned.append((owner, (await _json(created, 201))["id"]))

        async def sessions_are(predicate: Callable[[dict[str, Any]], bool]) -> bool:
            for owner, session_id in owned:
                response = await http.get(f"/api/v1/sessions/{session_id}", headers=auth[owner])
                if not predicate(await _json(response)):
                    return False
            return True

        await sizzle.until(lambda: sessions_are(lambda s: s["status"] == "ready"), "ready GPUs")
        for owner, session_id in owned:
            started = await http.post(f"/api/v1/sessions/{session_id}/start", headers=auth[owner])
            assert (await _json(started))["status"] == "active"

        sizzle.set_clock(T0 + BEFORE_CRASH)
        await sizzle.until(
            lambda: sessions_are(lambda s: s["charged_minutes"] == 3), "minutes 1-3 charged"
        )

    sizzle.kill("server")
    sizzle.set_clock(T0 + AFTER_RESTART)  # the GPUs ran on while the server was down
    base_url = await sizzle.serve("restarted")

    expected = math.ceil(AFTER_RESTART / 60)
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await sizzle.until(
            lambda: sessions_are(lambda s: s["charged_minutes"] == expected),
            "the restarted server's metering to charge the downtime",
        )
        for owner, session_id in owned:
            stopped = await _json(
                await http.post(f"/api/v1/sessions/{session_id}/stop", headers=auth[owner])
            )
            assert stopped["status"] == "terminated"
            assert stopped["active_seconds"] == AFTER_RESTART
            assert stopped["charged_minutes"] == math.ceil(stopped["active_seconds"] / 60)
            assert stopped["charged_minutes"] == expected

        for owner in ("alice", "bob", "boss"):
            entries = (
                await _json(
                    await http.get(
                        "/api/v1/billing/transactions", params={"limit": 500}, headers=auth[owner]
                    )
                )
            )["items"]
            for session_id in (s for o, s in owned if o == owner):
                minutes = sorted(
                    e["minute"]
                    for e in entries
                    if e["kind"] == "session_minute" and e["session_id"] == session_id
                )
                assert minutes == list(range(1, expected + 1)), (owner, session_id)

        funds = {
            owner: await _json(await http.get("/api/v1/auth/me", headers=auth[owner]))
            for owner in auth
        }
    for owner in ("alice", "bob"):
        assert funds[owner]["free_minutes"] == FREE_MINUTES - expected
        assert funds[owner]["balance_usd"] == "0.00"
    # boss pays by credit: 8 minutes at $0.15 and 8 at $1.50
    assert funds["boss"]["free_minutes"] == 0
    assert funds["boss"]["balance_usd"] == "6.80"
