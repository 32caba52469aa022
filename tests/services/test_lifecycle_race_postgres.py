"""Pause, resume and stop racing over two `sizzle serve` processes on one PostgreSQL database.

Every round sends each live session a burst of pauses and resumes (and, late on, a stop)
through both servers at once. After each round, with every request answered, the session's
status must match what the provider holds (the demo provider keeps its instances in the
database): active with a running GPU, paused with a stopped one, ended with none. At the end
each session is billed for exactly the time its GPU ran: the sum of the gaps between rounds
it spent active, every started minute once. Only the file clock decides billing time.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from sizzle.db.database import Database
from sizzle.db.models import DemoInstance, GpuSession, LedgerEntry
from tests.helpers import PASSWORD, bearer, make_user
from tests.processes import SizzleProcesses

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

T0 = 1_772_366_400  # 2026-03-01 12:00 UTC, in epoch seconds
SESSIONS = 4
ROUNDS = 40
STOPS_FROM_ROUND = 36  # from here on, one session a round is also stopped mid-burst
ROUND_SECONDS = 25  # clock time between rounds
WAIT_SECONDS = 30
SETTINGS = {
    "SIZZLE_DEMO_CAPACITY": str(SESSIONS),
    "SIZZLE_DEMO_PROVISION_SECONDS": "0",
    "SIZZLE_METER_INTERVAL_SECONDS": "1",
    "SIZZLE_JOBS_INTERVAL_SECONDS": "0.05",
    # The reconciler would repair what this test must see never happen: keep it out of it.
    "SIZZLE_RECONCILE_INTERVAL_SECONDS": "3600",
    "SIZZLE_RATE_LIMITS_ENABLED": "false",
}
# A session's status, and the states its instance may be in at the provider then.
AGREES = {"active": "running", "paused": "stopped", "terminated": "terminated"}


@dataclass
class Servers:
    processes: SizzleProcesses
    replicas: list[httpx.AsyncClient]


@pytest.fixture
async def servers(db: Database, database_url: str, tmp_path: Path) -> AsyncIterator[Servers]:
    """Two servers, each running the jobs too, on the emptied test database."""
    with SizzleProcesses(tmp_path, database_url, **SETTINGS) as processes:
        processes.wait_seconds = WAIT_SECONDS
        processes.set_clock(T0)
        urls = await asyncio.gather(processes.serve("api_a"), processes.serve("api_b"))
        async with (
            httpx.AsyncClient(base_url=urls[0], timeout=WAIT_SECONDS) as a,
            httpx.AsyncClient(base_url=urls[1], timeout=WAIT_SECONDS) as b,
        ):
            yield Servers(processes, [a, b])


async def _sign_in(db: Database, http: httpx.AsyncClient) -> dict[str, str]:
    user = await make_user(
        db, now=datetime.fromtimestamp(T0, UTC), plan="enterprise", free_minutes=10_000
    )
    response = await http.post(
        "/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


async def _statuses(db: Database, session_ids: list[str]) -> dict[str, tuple[str, str]]:
    """Each session's (status, the state of its instance at the provider)."""
    async with db.read() as tx:
        rows = (
            await tx.execute(
                select(GpuSession.id, GpuSession.status, DemoInstance.state)
                .join(DemoInstance, DemoInstance.id == GpuSession.instance_id)
                .where(GpuSession.id.in_(session_ids))
            )
        ).all()
    return {session_id: (status, state) for session_id, status, state in rows}


async def test_status_and_instance_agree_after_every_round_of_racing_actions(
    servers: Servers, db: Database
) -> None:
    a, b = servers.replicas
    auth = await _sign_in(db, a)
    created = await asyncio.gather(
        *(
            servers.replicas[n % 2].post("/api/v1/sessions", json={"tier": "starter"}, headers=auth)
            for n in range(SESSIONS)
        )
    )
    assert all(response.status_code == 201 for response in created), [r.text for r in created]
    ids = [response.json()["id"] for response in created]

    async def all_ready() -> bool:
        seen = await _statuses(db, ids)
        return len(seen) == SESSIONS and {status for status, _ in seen.values()} == {"ready"}

    await servers.processes.until(all_ready, "every GPU ready")
    for n, session_id in enumerate(ids):
        started = await servers.replicas[n % 2].post(
            f"/api/v1/sessions/{session_id}/start", headers=auth
        )
        assert started.status_code == 200, started.text

    rng = random.Random(13)
    active_seconds = dict.fromkeys(ids, 0)  # the truth: time each GPU ran
    live = list(ids)
    for round_number in range(ROUNDS):
        burst = []
        for session_id in live:
            for action in rng.sample(["pause", "resume", "pause", "resume"], 3):
                burst.append((rng.choice((a, b)), session_id, action))
        if round_number >= STOPS_FROM_ROUND and live:
            burst.insert(rng.randrange(len(burst)), (rng.choice((a, b)), live[0], "stop"))
        answers = await asyncio.gather(
            *(
                http.post(f"/api/v1/sessions/{sid}/{what}", headers=auth)
                for http, sid, what in burst
            )
        )
        for (_http, _session_id, action), answer in zip(burst, answers, strict=True):
            # 409 only for what the session's status forbids by then (pausing a paused one...)
            refused = answer.status_code == 409 and answer.json()["error"]["code"]
            assert answer.status_code == 200 or refused == "invalid_transition", (
                action,
                answer.text,
            )

        seen = await _statuses(db, ids)
        disagree = {sid: pair for sid, pair in seen.items() if AGREES.get(pair[0]) != pair[1]}
        assert not disagree, f"round {round_number}: status vs instance {disagree}"
        live = [sid for sid in live if seen[sid][0] != "terminated"]
        for session_id in live:
            if seen[session_id][0] == "active":
                active_seconds[session_id] += ROUND_SECONDS
        servers.processes.set_clock(T0 + (round_number + 1) * ROUND_SECONDS)

    stopped = await asyncio.gather(
        *(a.post(f"/api/v1/sessions/{sid}/stop", headers=auth) for sid in live)
    )
    assert all(response.status_code == 200 for response in stopped)
    async with db.read() as tx:
        sessions = {s.id: s for s in await tx.scalars(select(GpuSession))}
        minutes = Counter(
            (session_id, minute)
            for session_id, minute in await tx.execute(
                select(LedgerEntry.session_id, LedgerEntry.minute).where(
                    LedgerEntry.kind == "session_minute"
                )
            )
        )
        refunds = await tx.scalar(
            select(func.count()).where(LedgerEntry.kind == "session_minute_refund")
        )
    assert refunds == 0
    for session_id in ids:
        session = sessions[session_id]
        assert session.status == "terminated"
        assert session.active_ms_before == active_seconds[session_id] * 1000, session_id
        charged = math.ceil(active_seconds[session_id] / 60)
        assert session.charged_minutes == charged, session_id
        billed = {key: n for key, n in minutes.items() if key[0] == session_id}
        assert billed == {(session_id, k): 1 for k in range(1, charged + 1)}, session_id
