"""Two OS processes run the launch queue's passes at once against one PostgreSQL database.

Every queued launch must be launched exactly once however the passes interleave: one session
per queued launch, the launch's `session_id` that very session, and the launches counted by
both workers together equal to the sessions made.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, QueuedLaunch
from sizzle.services import accounts, launch_queue
from tests.conftest import TEST_SECRET
from tests.helpers import PASSWORD

pytestmark = pytest.mark.postgres_only

TIERS = ("starter", "pro", "beast", "ultra")
PER_TIER = 8
PASSES = 12

# Connects, says it is ready, waits for the start line, then runs PASSES queue passes (the
# demo provider offers one GPU of each tier per pass: each pass launches one per tier).
WORKER = r"""
import asyncio, sys, time
from datetime import UTC, datetime
from pathlib import Path
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.jobs.launch_queue import run_queue_pass
from sizzle.settings import Settings
from sizzle.state import AppState

async def main(url, home, ready, go, passes):
    clock = FakeClock(datetime(2026, 3, 1, 12, 5, tzinfo=UTC))
    settings = Settings(home=home, database_url=url, secret_key=sys.argv[6], providers="demo",
                        demo_capacity=1000)
    db = Database(url)
    state = AppState.build(settings, clock=clock, db=db)
    Path(ready).touch()
    deadline = time.monotonic() + 30
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit("no start signal")
        await asyncio.sleep(0.001)
    launched = 0
    for _ in range(passes):
        done = await run_queue_pass(db, state.orchestrator, now=clock.now(), lab_tiers=())
        launched += done.launched
    await db.dispose()
    print(launched)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
"""


async def _queue_launches(db: Database, clock: FakeClock) -> list[str]:
    """One waiting launch for each of many users (so that a second session for one launch
    would show as a user with two), a second apart."""
    ids = []
    for number in range(PER_TIER * len(TIERS)):
        async with db.transaction() as tx:
            user = await accounts.create_user(
                tx,
                email=f"queuer{number}@example.com",
                password=PASSWORD,
                plan="enterprise",
                free_minutes=10,
                now=clock.now(),
            )
        queued = await launch_queue.queue_launch(
            db,
            user_id=user.id,
            tier_name=TIERS[number % len(TIERS)],
            model=None,
            max_minutes=None,
            spend_cap_micros=None,
            idle_minutes=15,
            now=clock.now(),
            max_wait=timedelta(hours=24),
            max_waiting=3,
        )
        ids.append(queued.entry.id)
        clock.advance(1)
    return ids


def _race(database_url: str, tmp_path: Path, workers: int) -> int:
    """Run the worker processes, all released at once; the launches they counted."""
    go = tmp_path / "go"
    started = []
    for number in range(workers):
        ready = tmp_path / f"ready{number}"
        home = tmp_path / f"home{number}"
        home.mkdir()
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER, database_url, str(home), str(ready), str(go)]
            + [str(PASSES), TEST_SECRET],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append((process, ready))
    deadline = time.monotonic() + 60
    while not all(ready.exists() for _, ready in started):
        assert all(p.poll() is None for p, _ in started), [p.communicate() for p, _ in started]
        assert time.monotonic() < deadline, "the workers did not get ready"
        time.sleep(0.01)
    go.touch()
    launched = 0
    for process, _ in started:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        launched += int(out.strip().splitlines()[-1])
    return launched


async def test_two_workers_launch_each_queued_launch_exactly_once(
    db: Database, database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    queued = await _queue_launches(db, clock)
    launched = _race(database_url, tmp_path, workers=2)
    async with db.read() as tx:
        entries = list(await tx.scalars(select(QueuedLaunch)))
        made = list(await tx.scalars(select(GpuSession)))
    assert len(made) == launched == len(queued)  # every pass that launched made one session
    assert {e.status for e in entries} == {"launched"}
    assert sorted(e.session_id or "" for e in entries) == sorted(s.id for s in made)
    assert set(Counter(s.user_id for s in made).values()) == {1}
    owners = {s.id: s.user_id for s in made}
    assert all(owners[e.session_id or ""] == e.user_id for e in entries)
    assert all(e.tries == 1 for e in entries)
