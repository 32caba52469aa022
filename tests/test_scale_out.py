"""Scale-out: two `sizzle worker` processes and two API replicas (`sizzle serve --no-jobs`) on
one PostgreSQL database, running real demo sessions.

The workers race on every job at short intervals (metering, launch, readiness, reaper,
release, reconciler) while users act through both replicas in turn. Afterwards the database
must show every minute billed exactly once, every session launched once and released once,
and a balanced ledger; a browser watching one replica must see what was done on the other.
Only the file clock decides billing time; the real waits below just poll, with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from sizzle.db.database import Database
from sizzle.db.models import (
    DemoInstance,
    GpuSession,
    LaunchAttempt,
    LedgerAccount,
    LedgerEntry,
    Notification,
    ProviderInstance,
    QueuedLaunch,
    SessionEvent,
    User,
)
from tests.conftest import POSTGRES_URL
from tests.helpers import PASSWORD, confirm_address
from tests.processes import SizzleProcesses
from tests.smtp_inbox import Inbox

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not POSTGRES_URL.startswith(("postgresql://", "postgres://", "postgresql+")),
        reason="scale-out runs only on PostgreSQL (SQLite has one writer, so one process runs "
        "every job there): set SIZZLE_TEST_DATABASE_URL to a PostgreSQL database",
    ),
]

T0 = 1_772_366_400  # 2026-03-01 12:00 UTC, in epoch seconds
PROVISION_SECONDS = 10
T1 = T0 + PROVISION_SECONDS  # when the GPUs are ready and the sessions start
WAIT_SECONDS = 30
FREE_MINUTES = 100
SPARES = 12
SETTINGS = {  # short intervals, so that the workers race on every job
    "SIZZLE_DEMO_CAPACITY": "20",
    "SIZZLE_DEMO_PROVISION_SECONDS": str(PROVISION_SECONDS),
    "SIZZLE_METER_INTERVAL_SECONDS": "0.1",
    "SIZZLE_JOBS_INTERVAL_SECONDS": "0.02",
    "SIZZLE_RECONCILE_INTERVAL_SECONDS": "0.2",
    "SIZZLE_ABANDON_MINUTES": "5",
    "SIZZLE_FREE_MINUTES": str(FREE_MINUTES),
    "SIZZLE_RATE_LIMITS_ENABLED": "false",
}


class Cluster(SizzleProcesses):
    """`sizzle` processes on one database and one file clock: API replicas and workers."""

    wait_seconds = start_seconds = WAIT_SECONDS

    async def replica(self, name: str) -> str:
        """An API replica without jobs; its base URL once /healthz answers."""
        return await self.serve(name, "--no-jobs")

    def worker(self, name: str) -> None:
        self.start(name, "worker")

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """Every JSON log line named `event`, from every process, tagged with the process."""
        found = []
        for name in self.processes:
            for line in self.log(name).read_text(errors="replace").splitlines():
                if f'"{event}"' not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == event:
                    found.append({**record, "process": name})
        return found


@pytest.fixture
async def cluster(db: Database, database_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    """The `db` fixture has emptied the PostgreSQL test database."""
    with Cluster(tmp_path, database_url, **SETTINGS) as processes:
        processes.set_clock(T0)
        yield processes


@dataclass
class Plan:
    """One session of the scenario: whose, which tier, and what it should end as."""

    owner: str
    tier: str
    active_seconds: int  # at the end
    end_reason: str
    max_minutes: int | None = None
    started: bool = True  # else stopped by the user once ready, or abandoned
    id: str = ""


PLANS = {
    "stop_a": Plan("u0", "starter", 200, "user"),
    "stop_b": Plan("u1", "pro", 330, "user"),
    "paused": Plan("u2", "starter", 90 + 200, "user"),  # paused 90..200, stopped at 400
    "max3": Plan("u3", "beast", 180, "max_minutes", max_minutes=3),
    "max5": Plan("u4", "pro", 300, "max_minutes", max_minutes=5),
    "idle": Plan("u5", "starter", 0, "abandoned", started=False),
    "boss_starter": Plan("boss", "starter", 200, "user"),
    "boss_beast": Plan("boss", "beast", 330, "user"),
    "poor": Plan("poor", "starter", 180, "insufficient_credits"),  # $0.45: three minutes
    # launched, then stopped as soon as they are ready (the boss may run 16 at once)
    **{
        f"spare{n}": Plan("boss", ("starter", "pro")[n % 2], 0, "user", started=False)
        for n in range(SPARES)
    },
}
# Created in bursts, each at once through both replicas: each burst is a race to claim.
BURSTS = [
    ["stop_a", "stop_b", "paused"],
    ["max3", "max5", "idle"],
    ["boss_starter", "boss_beast", "poor"],
    *([f"spare{n}"] for n in range(SPARES)),
]


async def _json(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


class Users:
    """Both replicas, everyone's sign-in token, and a few calls through either replica."""

    def __init__(self, a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
        self.replicas = {"A": a, "B": b}
        self.auth: dict[str, dict[str, str]] = {}

    def auth_of(self, name: str) -> dict[str, str]:
        return self.auth[PLANS[name].owner]

    async def session(self, name: str, replica: str = "A") -> Any:
        response = await self.replicas[replica].get(
            f"/api/v1/sessions/{PLANS[name].id}", headers=self.auth_of(name)
        )
        return await _json(response)

    async def act(self, name: str, action: str, replica: str) -> Any:
        response = await self.replicas[replica].post(
            f"/api/v1/sessions/{PLANS[name].id}/{action}", headers=self.auth_of(name)
        )
        return await _json(response)

    async def all_are(self, expected: dict[str, tuple[str, int]]) -> bool:
        """Each named session has (status, charged minutes); read through both replicas."""
        for index, (name, (status, minutes)) in enumerate(expected.items()):
            body = await self.session(name, "AB"[index % 2])
            if (body["status"], body["charged_minutes"]) != (status, minutes):
                return False
        return True

    async def watched(
        self, name: str, *, watch_on: str, act_on: str, action: str, until: set[str]
    ) -> dict[str, Any]:
        """Do `action` through one replica while the other's event stream is read; the first
        event there whose status is in `until`."""
        headers = self.auth_of(name)
        path = f"/api/v1/sessions/{PLANS[name].id}/events"
        async with self.replicas[watch_on].stream("GET", path, headers=headers) as response:
            assert response.status_code == 200
            events = _sse_events(response)
            first = await asyncio.wait_for(anext(events), WAIT_SECONDS)
            assert first["status"] not in until
            await self.act(name, action, act_on)
            while True:
                event = await asyncio.wait_for(anext(events), WAIT_SECONDS)
                if event["status"] in until:
                    return event


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


async def test_two_workers_and_two_replicas_bill_every_minute_once(
    cluster: Cluster, db: Database
) -> None:
    cluster.cli("db", "upgrade")
    for who, plan, credit in (("boss", "enterprise", "20"), ("poor", "free", "0.45")):
        cluster.cli(
            "admin",
            "create-user",
            f"{who}@example.com",
            "--password",
            PASSWORD,
            "--plan",
            plan,
            SIZZLE_FREE_MINUTES="0",
        )
        cluster.cli("admin", "grant-credits", f"{who}@example.com", credit)
    cluster.worker("worker1")
    cluster.worker("worker2")
    url_a, url_b = await asyncio.gather(cluster.replica("api_a"), cluster.replica("api_b"))

    async with (
        httpx.AsyncClient(base_url=url_a, timeout=WAIT_SECONDS) as a,
        httpx.AsyncClient(base_url=url_b, timeout=WAIT_SECONDS) as b,
    ):
        users = Users(a, b)
        replicas = [a, b]
        for index, owner in enumerate(sorted({p.owner for p in PLANS.values()})):
            http = replicas[index % 2]
            if owner in ("boss", "poor"):
                body = await _json(
                    await http.post(
                        "/api/v1/auth/login",
                        json={"email": f"{owner}@example.com", "password": PASSWORD},
                    )
                )
            else:
                body = await _json(
                    await http.post(
                        "/api/v1/auth/register",
                        json={
                            "email": f"{owner}@example.com",
                            "password": PASSWORD,
                            "accept_terms": True,
                        },
                    ),
                    201,
                )
                # the free minutes come with the confirmed address
                await confirm_address(http, user_id=body["user"]["id"], email=body["user"]["email"])
            users.auth[owner] = {"Authorization": f"Bearer {body['access_token']}"}

        for number, burst in enumerate(BURSTS):
            created = await asyncio.gather(
                *(
                    replicas[(number + index) % 2].post(
                        "/api/v1/sessions",
                        json={"tier": PLANS[name].tier, "max_minutes": PLANS[name].max_minutes},
                        headers=users.auth_of(name),
                    )
                    for index, name in enumerate(burst)
                )
            )
            for name, response in zip(burst, created, strict=True):
                PLANS[name].id = (await _json(response, 201))["id"]

            async def claimed(burst: list[str] = burst) -> bool:
                statuses = [(await users.session(name))["status"] for name in burst]
                return "pending" not in statuses

            await cluster.until(claimed, f"a worker to claim {burst}")

        async def launched() -> bool:
            for name in PLANS:
                body = await users.session(name)
                if body["status"] != "provisioning" or body["gpu_type"] is None:
                    return False
            return True

        await cluster.until(launched, "every session launched by a worker")
        cluster.set_clock(T1)
        await cluster.until(lambda: users.all_are(dict.fromkeys(PLANS, ("ready", 0))), "ready GPUs")
        for index, (name, plan) in enumerate(PLANS.items()):
            if plan.started:
                assert (await users.act(name, "start", "AB"[index % 2]))["status"] == "active"
            elif name.startswith("spare"):
                assert (await users.act(name, "stop", "AB"[index % 2]))["status"] == "terminated"

        def expect(minutes: dict[str, int], **status: str) -> dict[str, tuple[str, int]]:
            return {n: (status.get(n, "active"), m) for n, m in minutes.items()}

        running = [name for name, plan in PLANS.items() if plan.started]
        cluster.set_clock(T1 + 30)
        await cluster.until(lambda: users.all_are(expect(dict.fromkeys(running, 1))), "minute 1")

        cluster.set_clock(T1 + 90)
        await cluster.until(lambda: users.all_are(expect(dict.fromkeys(running, 2))), "minute 2")
        seen = await users.watched(
            "paused", watch_on="B", act_on="A", action="pause", until={"paused"}
        )
        assert (seen["active_seconds"], seen["charged_minutes"]) == (90, 2)

        cluster.set_clock(T1 + 150)
        minutes = {**dict.fromkeys(running, 3), "paused": 2}
        await cluster.until(
            lambda: users.all_are(expect(minutes, paused="paused")), "minute 3, one paused"
        )

        # At 200 s: the three-minute session and the one out of credit have ended at 180 s.
        cluster.set_clock(T1 + 200)
        minutes = {**dict.fromkeys(running, 4), "paused": 2, "max3": 3, "poor": 3}
        await cluster.until(
            lambda: users.all_are(
                expect(minutes, paused="paused", max3="terminated", poor="terminated")
            ),
            "minute 4, two sessions ended by the workers",
        )
        assert (await users.act("paused", "resume", "B"))["status"] == "active"
        seen = await users.watched(
            "stop_a", watch_on="B", act_on="A", action="stop", until={"stopping", "terminated"}
        )
        assert seen["charged_minutes"] == 4
        seen = await users.watched(
            "boss_starter",
            watch_on="A",
            act_on="B",
            action="stop",
            until={"stopping", "terminated"},
        )
        assert seen["charged_minutes"] == 4

        # At 330 s: the five-minute session ended at 300 s, the idle one was abandoned.
        cluster.set_clock(T1 + 330)
        await cluster.until(
            lambda: users.all_are(
                {
                    "stop_b": ("active", 6),
                    "boss_beast": ("active", 6),
                    "paused": ("active", 4),  # 90 s + 130 s
                    "max5": ("terminated", 5),
                    "idle": ("terminated", 0),
                }
            ),
            "minute 6, the reaper's two",
        )
        assert (await users.act("stop_b", "stop", "B"))["status"] == "terminated"
        assert (await users.act("boss_beast", "stop", "A"))["status"] == "terminated"

        cluster.set_clock(T1 + 400)
        await cluster.until(lambda: users.all_are({"paused": ("active", 5)}), "paused's minute 5")
        assert (await users.act("paused", "stop", "B"))["status"] == "terminated"

        final = {name: await users.session(name, "B") for name in PLANS}
        funds = {
            owner: await _json(await a.get("/api/v1/auth/me", headers=auth))
            for owner, auth in users.auth.items()
        }

    for name, plan in PLANS.items():
        body = final[name]
        assert body["status"] == "terminated", (name, body)
        assert body["end_reason"] == plan.end_reason, (name, body)
        assert body["active_seconds"] == plan.active_seconds, (name, body)
        assert body["charged_minutes"] == math.ceil(plan.active_seconds / 60), (name, body)
    assert funds["boss"]["free_minutes"] == 0
    assert funds["boss"]["balance_usd"] == "10.40"  # $20 - 4 x $0.15 - 6 x $1.50
    assert funds["poor"]["balance_usd"] == "0.00"
    for owner in ("u0", "u1", "u2", "u3", "u4", "u5"):
        spent = sum(final[n]["charged_minutes"] for n, p in PLANS.items() if p.owner == owner)
        assert funds[owner]["free_minutes"] == FREE_MINUTES - spent, owner

    await _assert_each_job_done_once(cluster, db)
    await _assert_ledger_balances(db)


async def _assert_each_job_done_once(cluster: Cluster, db: Database) -> None:
    ids = {plan.id: name for name, plan in PLANS.items()}
    async with db.read() as tx:
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
        sessions = {s.id: s for s in await tx.scalars(select(GpuSession))}
        launches = Counter(
            (session_id, outcome)
            for session_id, outcome in await tx.execute(
                select(LaunchAttempt.session_id, LaunchAttempt.outcome)
            )
        )
        instances = list(await tx.scalars(select(ProviderInstance)))
        demo = list(await tx.scalars(select(DemoInstance)))
        transitions = Counter(
            (session_id, status)
            for session_id, status in await tx.execute(
                select(SessionEvent.session_id, SessionEvent.to_status)
            )
        )

    assert set(sessions) == set(ids)
    assert refunds == 0
    for session_id, session in sessions.items():
        name = ids[session_id]
        charged = session.charged_minutes
        # minute k of a session charged once, every k from 1 to charged_minutes, no other
        expected = {(session_id, k): 1 for k in range(1, charged + 1)}
        assert {key: n for key, n in minutes.items() if key[0] == session_id} == expected, name
        assert charged == math.ceil(session.active_ms_before / 60_000), name
        assert launches[(session_id, "launched")] == 1, (name, launches)
        for status in ("provisioning", "ready", "stopping", "terminated"):
            assert transitions[(session_id, status)] == 1, (name, status, transitions)

    assert sorted(i.session_id for i in instances) == sorted(ids)  # one instance each
    assert all(i.terminated_at is not None for i in instances)
    assert sorted(d.name for d in demo) == sorted(f"sizzle-{i}" for i in ids)  # provisioned once
    assert {d.state for d in demo} == {"terminated"}

    released = Counter(r["session_id"] for r in cluster.log_events("session.instance_released"))
    assert released == dict.fromkeys(ids, 1)  # each GPU given back by exactly one process
    assert cluster.log_events("reconcile.orphan_destroyed") == []
    assert cluster.log_events("launch.discarded") == []
    launched_by = Counter(r["process"] for r in cluster.log_events("session.launched"))
    assert sum(launched_by.values()) == len(ids)
    assert set(launched_by) <= {"worker1", "worker2"}


async def _assert_ledger_balances(db: Database) -> None:
    async with db.read() as tx:
        accounts = {a.id: a for a in await tx.scalars(select(LedgerAccount))}
        entries = list(await tx.scalars(select(LedgerEntry)))
    computed = dict.fromkeys(accounts, 0)
    for entry in entries:
        debit, credit = accounts[entry.debit_account_id], accounts[entry.credit_account_id]
        assert debit.unit == credit.unit == entry.unit, entry.idempotency_key
        assert entry.amount > 0
        computed[debit.id] -= entry.amount
        computed[credit.id] += entry.amount
    for account in accounts.values():
        assert account.balance == computed[account.id], account.name  # cache = sum of entries
        if account.user_id is not None:
            assert account.balance >= 0, account.name
    for unit in {a.unit for a in accounts.values()}:
        assert sum(a.balance for a in accounts.values() if a.unit == unit) == 0, unit


# --- notifications mailed once, a queued launch launched once ---------------------------------

QUEUE_SETTINGS = {  # one starter GPU, and every job racing at short intervals
    "SIZZLE_DEMO_CAPACITY": "1",
    "SIZZLE_DEMO_PROVISION_SECONDS": str(PROVISION_SECONDS),
    "SIZZLE_METER_INTERVAL_SECONDS": "0.2",
    "SIZZLE_JOBS_INTERVAL_SECONDS": "0.1",
    "SIZZLE_RECONCILE_INTERVAL_SECONDS": "0.5",
    "SIZZLE_NOTIFICATION_INTERVAL_SECONDS": "0.1",
    "SIZZLE_QUEUE_INTERVAL_SECONDS": "0.1",
    "SIZZLE_FREE_MINUTES": "0",
    "SIZZLE_RATE_LIMITS_ENABLED": "false",
}
# What each user is told, by mail, in the scenario below (the kinds of notification).
TOLD = {
    "holder@example.com": ["idle_stopped", "idle_warning", "session_ready"],
    "waiter@example.com": ["queued_launch_ready", "session_auto_stopped"],
}


@pytest.fixture
async def mail_cluster(
    db: Database, database_url: str, tmp_path: Path, inbox: tuple[Inbox, int]
) -> AsyncIterator[Cluster]:
    """Like `cluster`, with one GPU of a tier and mail through the SMTP server on loopback."""
    _, port = inbox
    smtp = {"SIZZLE_SMTP_URL": f"smtp://127.0.0.1:{port}"}
    with Cluster(tmp_path, database_url, **QUEUE_SETTINGS, **smtp) as processes:
        processes.set_clock(T0)
        yield processes


async def test_two_workers_mail_each_notification_once_and_launch_a_queued_launch_once(
    mail_cluster: Cluster, db: Database, inbox: tuple[Inbox, int]
) -> None:
    cluster, (mailbox, _) = mail_cluster, inbox
    cluster.cli("db", "upgrade")
    for email in TOLD:
        cluster.cli("admin", "create-user", email, "--password", PASSWORD)
        cluster.cli("admin", "grant-credits", email, "5")
    url_a, url_b = await asyncio.gather(cluster.replica("api_a"), cluster.replica("api_b"))
    cluster.worker("worker1")
    cluster.worker("worker2")

    async with (
        httpx.AsyncClient(base_url=url_a, timeout=WAIT_SECONDS) as a,
        httpx.AsyncClient(base_url=url_b, timeout=WAIT_SECONDS) as b,
    ):
        holder, waiter = [
            {"Authorization": f"Bearer {body['access_token']}"}
            for body in [
                await _json(
                    await http.post(
                        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
                    )
                )
                for http, email in zip((a, b), TOLD, strict=True)
            ]
        ]

        async def status_of(session_id: str, auth: dict[str, str]) -> str:
            body = await _json(await b.get(f"/api/v1/sessions/{session_id}", headers=auth))
            return str(body["status"])

        async def until_status(session_id: str, auth: dict[str, str], status: str) -> None:
            async def reached() -> bool:
                return await status_of(session_id, auth) == status

            await cluster.until(reached, f"session {session_id} {status}")

        # The holder takes the one starter GPU, starts it, and leaves it unused: warned at
        # 3 minutes, paused at 5 (mails: ready, the warning, the pause).
        held = await a.post(
            "/api/v1/sessions", json={"tier": "starter", "idle_minutes": 5}, headers=holder
        )
        held_id = (await _json(held, 201))["id"]
        await cluster.until(lambda: _launched(b, held_id, holder), "the holder's GPU launched")
        cluster.set_clock(T1)
        await until_status(held_id, holder, "ready")
        assert (await _json(await b.post(f"/api/v1/sessions/{held_id}/start", headers=holder)))[
            "status"
        ] == "active"

        # None free for the waiter: the launch is queued (and waits, at no charge).
        refused = await b.post("/api/v1/sessions", json={"tier": "starter"}, headers=waiter)
        assert refused.status_code == 503, refused.text
        queued = await _json(
            await a.post("/api/v1/launch-queue", json={"tier": "starter"}, headers=waiter), 201
        )
        assert queued["status"] == "waiting"

        cluster.set_clock(T1 + 180)
        await cluster.until(lambda: _told(db, "idle_warning"), "the idle warning")
        cluster.set_clock(T1 + 300)
        await until_status(held_id, holder, "paused")
        stopped = await a.post(f"/api/v1/sessions/{held_id}/stop", headers=holder)
        assert (await _json(stopped))["status"] == "terminated"

        # The GPU is free: one worker launches the queued launch; ready, the waiter is told.
        async def entry() -> dict[str, Any]:
            path = f"/api/v1/launch-queue/{queued['id']}"
            return dict(await _json(await b.get(path, headers=waiter)))

        async def launched_from_queue() -> bool:
            return (await entry())["status"] == "launched"

        await cluster.until(launched_from_queue, "the queued launch launched")
        session_id = (await entry())["session_id"]
        await cluster.until(lambda: _launched(b, session_id, waiter), "the waiter's GPU launched")
        cluster.set_clock(T1 + 300 + PROVISION_SECONDS)
        await until_status(session_id, waiter, "ready")
        assert (await entry())["status"] == "ready"

        async def ready_mailed() -> bool:
            return "queued_launch_ready" in (await _mailed(db)).get("waiter@example.com", [])

        # Mailed before the clock jumps past the mail's sending lease: a send still under way
        # then would be one whose lease ran out, which another worker takes up again by design.
        await cluster.until(ready_mailed, "the ready mail sent")
        # The waiter stays away: the GPU is held for them 30 minutes, then given back.
        cluster.set_clock(T1 + 300 + PROVISION_SECONDS + 30 * 60)
        await until_status(session_id, waiter, "terminated")

        async def all_mailed() -> bool:
            return await _mailed(db) == TOLD

        await cluster.until(all_mailed, "every notification mailed")
        await asyncio.sleep(1)  # ten more rounds of each worker's mail job: none mails again

    async with db.read() as tx:
        titles = {
            (email, title)
            for email, title in await tx.execute(
                select(User.email, Notification.title).join(
                    Notification, Notification.user_id == User.id
                )
            )
        }
        waiters = list(
            await tx.scalars(
                select(GpuSession).join(User).where(User.email == "waiter@example.com")
            )
        )
        instances = Counter(i.session_id for i in await tx.scalars(select(ProviderInstance)))
        demo = Counter(d.name for d in await tx.scalars(select(DemoInstance)))
        attempts = Counter(
            outcome
            for (outcome,) in await tx.execute(
                select(LaunchAttempt.outcome).where(LaunchAttempt.session_id == session_id)
            )
        )
        entry_row = await tx.get(QueuedLaunch, queued["id"])
    received = Counter((m["To"], m["Subject"]) for m in mailbox.messages)
    assert received == dict.fromkeys(titles, 1)  # each notification mailed, and only once
    assert [s.id for s in waiters] == [session_id]  # one session for the queued launch
    assert (waiters[0].end_reason, waiters[0].charged_minutes) == ("abandoned", 0)
    assert instances[session_id] == 1 and demo[f"sizzle-{session_id}"] == 1
    assert attempts["launched"] == 1, attempts
    assert entry_row is not None and (entry_row.status, entry_row.tries) == ("ready", 1)
    assert len(cluster.log_events("launch.queue_launched")) == 1
    assert len(cluster.log_events("idle.ended")) == 1


async def _launched(http: httpx.AsyncClient, session_id: str, auth: dict[str, str]) -> bool:
    body = await _json(await http.get(f"/api/v1/sessions/{session_id}", headers=auth))
    return body["status"] == "provisioning" and body["gpu_type"] is not None


async def _told(db: Database, kind: str) -> bool:
    async with db.read() as tx:
        return bool(await tx.scalar(select(func.count()).where(Notification.kind == kind)))


async def _mailed(db: Database) -> dict[str, list[str]]:
    """The kinds of notification mailed to each user so far (sorted)."""
    async with db.read() as tx:
        rows = await tx.execute(
            select(User.email, Notification.kind)
            .join(Notification, Notification.user_id == User.id)
            .where(Notification.mail_status == "sent")
        )
        mailed: dict[str, list[str]] = {}
        for email, kind in rows:
            mailed.setdefault(email, []).append(kind)
    return {email: sorted(kinds) for email, kinds in mailed.items()}
