"""A real `sizzle serve` is killed (SIGKILL) while sessions run, and restarted later.

The GPUs were held all through the downtime, so that time is billed when the server comes
back: each session ends up charged ceil(active / 60 s) minutes, minutes 1..n exactly once.
Only the file clock decides billing time; the real waits below just poll for the server.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sizzle.db.database import Database
from tests.conftest import TEST_SECRET
from tests.helpers import PASSWORD

pytestmark = pytest.mark.slow

T0 = 1_772_366_400  # 2026-03-01 12:00 UTC, in epoch seconds
BEFORE_CRASH = 150  # seconds active when the server is killed: 3 minutes charged
AFTER_RESTART = 430  # seconds active when it is back: 8 minutes in all
FREE_MINUTES = 100
BOSS_CREDIT = "20"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SizzleProcesses:
    """Runs `sizzle …` commands and `sizzle serve` processes on one database and file clock."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.clock_file = tmp_path / "clock"
        self.env = {
            **os.environ,
            "SIZZLE_DATABASE_URL": database_url,
            "SIZZLE_SECRET_KEY": TEST_SECRET,
            "SIZZLE_HOME": str(tmp_path / "home"),
            "SIZZLE_HOST": "127.0.0.1",
            "SIZZLE_PROVIDERS": "demo",
            "SIZZLE_METER_INTERVAL_SECONDS": "0.2",
            "SIZZLE_JOBS_INTERVAL_SECONDS": "0.1",
            "SIZZLE_DEMO_PROVISION_SECONDS": "0",
            "SIZZLE_FREE_MINUTES": str(FREE_MINUTES),
            "SIZZLE_TEST_CLOCK_FILE": str(self.clock_file),
        }
        self.servers: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def set_clock(self, epoch_seconds: float) -> None:
        """Move the servers' time: write a temp file, then rename it over the clock file."""
        temporary = self.clock_file.with_suffix(".tmp")
        temporary.write_text(repr(epoch_seconds))
        os.replace(temporary, self.clock_file)

    def cli(self, *args: str, **env: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "sizzle", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"sizzle {' '.join(args)}: {done.stdout}{done.stderr}"

    async def serve(self) -> str:
        """Start `sizzle serve` on a free port; its base URL once /healthz answers."""
        port = _free_port()
        log = self.tmp_path / f"server{len(self.servers)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "sizzle", "serve"],
                env={**self.env, "SIZZLE_PORT": str(port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.servers.append(server)
        base_url = f"http://127.0.0.1:{port}"

        async def healthy() -> bool:
            assert server.poll() is None, f"the server exited: {self.log_tail()}"
            try:
                async with httpx.AsyncClient(base_url=base_url, timeout=1) as http:
                    return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await self.until(healthy, "the server to come up", timeout=20)
        return base_url

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no last metering pass, connections just drop."""
        server = self.servers[-1]
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)

    def stop_all(self) -> None:
        for server in self.servers:
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()

    def log_tail(self) -> str:
        return self.logs[-1].read_text(errors="replace")[-3000:] if self.logs else ""

    async def until(
        self, check: Callable[[], Awaitable[bool]], what: str, *, timeout: float = 10
    ) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.log_tail()}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def sizzle(db: Database, database_url: str, tmp_path: Path) -> AsyncIterator[SizzleProcesses]:
    """The `db` fixture has emptied the PostgreSQL test database (a SQLite file is fresh)."""
    processes = SizzleProcesses(tmp_path, database_url)
    processes.set_clock(T0)
    try:
        yield processes
    finally:
        processes.stop_all()


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

    base_url = await sizzle.serve()
    auth: dict[str, dict[str, str]] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        for name in ("alice", "bob"):  # free plan: one session each, on free minutes
            body = await _json(
                await http.post(
                    "/api/v1/auth/register",
                    json={"email": f"{name}@example.com", "password": PASSWORD},
                ),
                201,
            )
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

    sizzle.kill()
    sizzle.set_clock(T0 + AFTER_RESTART)  # the GPUs ran on while the server was down
    base_url = await sizzle.serve()

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
