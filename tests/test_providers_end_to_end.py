"""End to end with the real provider plugins: fake Vast, RunPod and Lambda APIs and fake
Ollama nodes on loopback ports, SIZZLE_PROVIDERS=ollama,vast,runpod,lambda, and a user who
goes through the HTTP API while the jobs run on a fake clock.

Launch with failover, readiness, billing and release; every kind of provider failure during
a launch; and the reconciler against what the fakes really hold.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.domain.tiers import TIERS
from sizzle.providers.vast.plugin import disk_gb
from sizzle.services import accounts
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import PASSWORD, act, create_session, get_session, log_in, make_user, run_for
from tests.providers.fakes.lambdalabs import FakeLambda
from tests.providers.fakes.lambdalabs import build_app as lambda_app
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.runpod import FakeGpuType, FakeRunPod
from tests.providers.fakes.runpod import build_app as runpod_app
from tests.providers.fakes.server import serve
from tests.providers.fakes.vast import API_KEY as VAST_KEY
from tests.providers.fakes.vast import FakeVast, vast_app
from tests.ssh_instance import ReadyOnceReachable

ALL_FOUR = "ollama,vast,runpod,lambda"
RTX_4090_RUNPOD = "NVIDIA GeForce RTX 4090"
LAMBDA_4090 = "gpu_1x_rtx4090"


def vast_offer(ask_id: int) -> str:
    """How Sizzle names a starter offer at Vast: the ask and the disk it was priced with."""
    return f"{ask_id}|{disk_gb(TIERS['starter'])}"


@dataclass
class Fakes:
    """The four fake providers, served on loopback, and their base URLs."""

    vast: FakeVast
    runpod: FakeRunPod
    lam: FakeLambda
    ollama: FakeOllama
    vast_url: str
    runpod_url: str
    lambda_url: str
    ollama_url: str


@dataclass
class Stack:
    state: AppState
    client: httpx.AsyncClient


@pytest.fixture
def fakes(clock: FakeClock) -> Iterator[Fakes]:
    vast = FakeVast(clock=clock)  # an instance boots on the clock: null, loading, running
    runpod = FakeRunPod(clock=clock, boot_seconds=5)  # no public IP for 5 s, then up
    lam = FakeLambda(clock=clock, boot_polls=1)
    ollama = FakeOllama()
    with ExitStack() as stack:
        urls = [
            stack.enter_context(serve(app))
            for app in (
                vast_app(vast),
                runpod_app(runpod),
                lambda_app(lam),
                fake_ollama_app(ollama),
            )
        ]
        yield Fakes(vast, runpod, lam, ollama, *urls)


def ollama_node(name: str, url: str, price: str) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        "gpu": "NVIDIA GeForce RTX 4090",
        "gpu_count": 1,
        "vram_gb": 24,
        "price_per_hour_usd": price,
    }


def price_starter_gpus(
    fakes: Fakes, *, vast: tuple[int, float], runpod: float, lambda_cents: int
) -> None:
    """One starter (RTX 4090) offer at each API provider, at the prices given."""
    offer_id, dph = vast
    fakes.vast.offer(offer_id, "RTX 4090", dph_total=dph)
    fakes.runpod.gpu_types = [FakeGpuType(RTX_4090_RUNPOD, "RTX 4090", 24, runpod)]
    fakes.lam.add_type(LAMBDA_4090, "1x RTX 4090 (24 GB PCIe)", lambda_cents, ["us-east-1"])


@pytest.fixture
async def wire(
    settings: Settings, clock: FakeClock, db: Database, fakes: Fakes
) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """Build the app with every plugin pointed at the fakes (plus any setting overrides)."""
    built: list[Stack] = []

    async def build(**overrides: Any) -> Stack:
        update: dict[str, Any] = {
            "providers": ALL_FOUR,
            "vast_api_url": f"{fakes.vast_url}/api/v0",
            "vast_api_key": VAST_KEY,
            "runpod_api_url": fakes.runpod_url,
            "runpod_rest_url": f"{fakes.runpod_url}/v1",
            "runpod_api_key": fakes.runpod.api_key,
            "lambda_api_url": f"{fakes.lambda_url}/api/v1",
            "lambda_api_key": fakes.lam.api_key,
            "ollama_nodes": json.dumps([ollama_node("box-1", fakes.ollama_url, "0.33")]),
            "provider_timeout_seconds": 5,
        }
        update.update(overrides)
        state = AppState.build(settings.model_copy(update=update), clock=clock, db=db)
        # Readiness through the private path has its own tests, against a real sshd.
        state.jobs.readiness = ReadyOnceReachable(
            db, state.tunnels, secret=state.settings.resolved_secret_key, clock=clock
        )
        assert list(state.providers) == ["ollama", "vast", "runpod", "lambda"]
        app = create_app(state=state, run_jobs=False)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sizzle.test"
        )
        built.append(Stack(state, client))
        return built[-1]

    yield build
    for stack in built:
        await stack.client.aclose()
        for provider in stack.state.providers.values():
            close = getattr(provider, "close", None)
            if close is not None:
                await close()


async def user_headers(stack: Stack, db: Database, clock: FakeClock) -> dict[str, str]:
    user = await make_user(db, now=clock.now(), credit_usd="20")
    return await log_in(stack.client, email=user.email)


async def admin_headers(stack: Stack, db: Database, clock: FakeClock) -> dict[str, str]:
    async with db.transaction() as tx:
        admin = await accounts.create_user(
            tx,
            email="ops@example.com",
            password=PASSWORD,
            is_admin=True,
            now=clock.now(),
            free_minutes=0,
        )
    return await log_in(stack.client, email=admin.email)


async def admin_detail(stack: Stack, admin: dict[str, str], session_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/api/v1/admin/sessions/{session_id}", headers=admin)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def admin_providers(stack: Stack, admin: dict[str, str]) -> dict[str, dict[str, Any]]:
    response = await stack.client.get("/api/v1/admin/providers", headers=admin)
    assert response.status_code == 200, response.text
    return {row["name"]: row for row in response.json()}


def tried(detail: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["provider"], a["offer_id"], a["outcome"]) for a in detail["attempts"]]


async def housekeep_until_ready(
    stack: Stack, clock: FakeClock, *, auth: dict[str, str], session_id: str, rounds: int = 6
) -> list[str]:
    """Run the provisioning jobs (the clock moving 5 s each round) until the session is
    ready; the statuses seen after each round."""
    seen: list[str] = []
    for _ in range(rounds):
        await stack.state.jobs.housekeep()
        seen.append((await get_session(stack.client, auth=auth, session_id=session_id))["status"])
        if seen[-1] == "ready":
            return seen
        clock.advance(5)
    raise AssertionError(f"never ready: {seen}")


async def test_cheapest_of_four_providers_runs_and_is_destroyed_then_fails_over(
    wire: Callable[..., Awaitable[Stack]], fakes: Fakes, db: Database, clock: FakeClock
) -> None:
    # Vast is cheapest, RunPod next, then the own Ollama node, then Lambda.
    price_starter_gpus(fakes, vast=(101, 0.29), runpod=0.30, lambda_cents=35)
    stack = await wire()
    auth = await user_headers(stack, db, clock)
    admin = await admin_headers(stack, db, clock)

    first = await create_session(stack.client, auth=auth, tier="starter")
    assert first["status"] == "pending"
    # every provider was asked and had exactly one starter offer
    health = await admin_providers(stack, admin)
    assert {name: row["offer_count"] for name, row in health.items()} == {
        "ollama": 1,
        "vast": 1,
        "runpod": 1,
        "lambda": 1,
    }
    assert all(row["healthy"] for row in health.values()), health

    seen = await housekeep_until_ready(stack, clock, auth=auth, session_id=first["id"])
    assert seen == ["provisioning", "provisioning", "ready"]  # Vast: null, loading, running
    (rent,) = fakes.vast.bodies("PUT", "/asks/101/")
    assert rent["label"] == f"sizzle-{first['id']}"
    (instance_id,) = fakes.vast.instances
    assert fakes.vast.instances[instance_id]["actual_status"] == "running"
    # nothing was rented anywhere else
    assert fakes.runpod.calls("POST", "/pods") == []
    assert fakes.lam.launches == []
    assert fakes.ollama.requests == []

    detail = await admin_detail(stack, admin, first["id"])
    assert (detail["provider"], detail["gpu_type"], detail["gpu_count"]) == ("vast", "RTX 4090", 1)
    assert detail["upstream_price_per_hour_usd"] == "0.29"
    assert tried(detail) == [("vast", vast_offer(101), "launched")]

    started = await act(stack.client, auth=auth, session_id=first["id"], action="start")
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "active"
    await run_for(stack.state, clock, seconds=125, step=25)
    running = await get_session(stack.client, auth=auth, session_id=first["id"])
    assert (running["status"], running["active_seconds"], running["charged_minutes"]) == (
        "active",
        125,
        3,
    )

    stopped = await act(stack.client, auth=auth, session_id=first["id"], action="stop")
    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert (body["status"], body["end_reason"], body["charged_minutes"]) == (
        "terminated",
        "user",
        3,
    )
    assert body["cost_usd"] == "0.45"  # 3 started minutes at 0.15
    # destroyed at Vast itself, not just marked in Sizzle's database
    assert fakes.vast.destroyed == [instance_id]
    assert fakes.vast.instances == {}

    # Failover: a cheaper Vast offer shows up, but someone else rents it first.
    fakes.vast.offer(102, "RTX 4090", dph_total=0.28)
    fakes.vast.taken.add(102)
    second = await create_session(stack.client, auth=auth, tier="starter")
    seen = await housekeep_until_ready(stack, clock, auth=auth, session_id=second["id"])
    assert seen == ["provisioning", "ready"]  # RunPod: no SSH address once, then up
    detail = await admin_detail(stack, admin, second["id"])
    assert tried(detail) == [
        ("vast", vast_offer(102), "no_capacity"),
        ("runpod", f"{RTX_4090_RUNPOD}|1", "launched"),
    ]
    refused, launched = detail["attempts"]
    assert "no_such_ask" in refused["error"]
    assert refused["upstream_price_per_hour_usd"] == "0.28"
    assert launched["error"] is None
    assert (detail["provider"], detail["upstream_price_per_hour_usd"]) == ("runpod", "0.30")
    assert len(fakes.vast.bodies("PUT", "/asks/102/")) == 1
    assert fakes.vast.instances == {}  # the refused rent left nothing behind
    (pod_id,) = fakes.runpod.pods
    assert fakes.runpod.pods[pod_id].name == f"sizzle-{second['id']}"

    stopped = await act(stack.client, auth=auth, session_id=second["id"], action="stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "terminated"
    assert fakes.runpod.terminated == [pod_id]
    assert fakes.runpod.pods == {}


def garbled_ollama_app() -> FastAPI:
    """An Ollama node that answers its version but streams garbage for a pull."""
    app = FastAPI()

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": "0.5.1"}

    @app.post("/api/pull")
    async def pull() -> PlainTextResponse:
        return PlainTextResponse('{"status": "pulling manifest"\n<html>oops</html>\n')

    return app


async def test_failover_past_no_capacity_garbage_and_a_bad_key(
    wire: Callable[..., Awaitable[Stack]], fakes: Fakes, db: Database, clock: FakeClock
) -> None:
    # Cheapest first: RunPod (bad key), Vast (taken), the garbled Ollama node, the good Ollama
    # node, and last Lambda (never reached).
    price_starter_gpus(fakes, vast=(201, 0.15), runpod=0.10, lambda_cents=40)
    fakes.vast.taken.add(201)
    with serve(garbled_ollama_app()) as garbled_url:
        nodes = [
            ollama_node("box-garbled", garbled_url, "0.25"),
            ollama_node("box-good", fakes.ollama_url, "0.30"),
        ]
        stack = await wire(runpod_api_key="not-the-runpod-key", ollama_nodes=json.dumps(nodes))
        auth = await user_headers(stack, db, clock)
        admin = await admin_headers(stack, db, clock)

        session = await create_session(stack.client, auth=auth, tier="starter", model="llama3.2")
        await stack.state.jobs.housekeep()

        body = await get_session(stack.client, auth=auth, session_id=session["id"])
        assert body["status"] == "ready"  # an Ollama node answers at once once loaded
        detail = await admin_detail(stack, admin, session["id"])
        assert detail["provider"] == "ollama"
        assert tried(detail) == [
            ("vast", vast_offer(201), "no_capacity"),
            ("ollama", "box-garbled", "provider_down"),
            ("ollama", "box-good", "launched"),
        ]
        no_capacity, garbled, good = (a["error"] for a in detail["attempts"])
        assert "no_such_ask" in no_capacity
        assert garbled == "ollama node box-garbled: malformed stream line"
        assert good is None
        assert fakes.lam.launches == []
        # the bad key never got as far as an attempt: RunPod was switched off at the offers
        assert fakes.runpod.calls("POST", "/pods") == []
        assert [kind for kind, _ in fakes.ollama.requests] == ["pull", "load"]
        assert "llama3.2:latest" in fakes.ollama.loaded

        health = await admin_providers(stack, admin)
        runpod = health["runpod"]
        assert (runpod["healthy"], runpod["disabled_reason"]) == (
            False,
            "runpod refused the API key",
        )
        assert runpod["last_error"] == "runpod refused the API key"
        lam = health["lambda"]  # never tried: nothing said about its health
        assert (lam["breaker"], lam["disabled_reason"], lam["last_error"]) == ("closed", None, None)
        ollama = health["ollama"]
        assert (ollama["breaker"], ollama["disabled_reason"]) == ("closed", None)
        assert ollama["last_error"] == "ollama node box-garbled: malformed stream line"
        vast = health["vast"]
        assert (vast["breaker"], vast["disabled_reason"], vast["last_error"]) == (
            "closed",
            None,
            None,  # an offer that is gone says nothing about Vast's health
        )


async def test_a_launch_that_hangs_is_cut_off_and_its_late_instance_destroyed(
    wire: Callable[..., Awaitable[Stack]], fakes: Fakes, db: Database, clock: FakeClock
) -> None:
    # A GPU-only session: Lambda is cheapest and hangs; the Ollama node is next.
    price_starter_gpus(fakes, vast=(401, 0.50), runpod=0.60, lambda_cents=20)
    fakes.lam.launch_delay = 3.0  # three times the timeout below
    nodes = [ollama_node("box-good", fakes.ollama_url, "0.30")]
    stack = await wire(ollama_nodes=json.dumps(nodes), provider_timeout_seconds=1.0)
    auth = await user_headers(stack, db, clock)
    admin = await admin_headers(stack, db, clock)

    session = await create_session(stack.client, auth=auth, tier="starter")
    began = time.monotonic()
    await stack.state.jobs.housekeep()
    took = time.monotonic() - began
    assert took < 2.8, f"the hanging launch was not cut off at the timeout ({took:.2f} s)"

    detail = await admin_detail(stack, admin, session["id"])
    assert tried(detail) == [
        ("lambda", f"{LAMBDA_4090}|us-east-1", "provider_down"),
        ("ollama", "box-good", "launched"),
    ]
    assert detail["attempts"][0]["error"] == "lambda: timed out (ReadTimeout)"
    lam = (await admin_providers(stack, admin))["lambda"]
    assert (lam["breaker"], lam["disabled_reason"], lam["last_error"]) == (
        "closed",  # one timeout does not open the breaker
        None,
        "lambda: timed out (ReadTimeout)",
    )

    # The launch Sizzle gave up on still goes through at Lambda once the hang ends; that
    # instance belongs to no one and the reconciler destroys it.
    deadline = time.monotonic() + 5
    while not fakes.lam.instances and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    (leaked,) = fakes.lam.instances.values()
    assert leaked.name == f"sizzle-{session['id']}"
    report = await stack.state.jobs.reconcile_now()
    assert report.orphans_destroyed == [f"lambda:{leaked.id}"]
    assert leaked.status == "terminated"
    body = await get_session(stack.client, auth=auth, session_id=session["id"])
    assert body["status"] == "ready"  # the session on box-good is untouched


async def test_reconciler_destroys_orphans_spares_foreign_and_fails_lost_sessions(
    wire: Callable[..., Awaitable[Stack]], fakes: Fakes, db: Database, clock: FakeClock
) -> None:
    price_starter_gpus(fakes, vast=(301, 0.29), runpod=0.40, lambda_cents=45)
    stack = await wire()
    auth = await user_headers(stack, db, clock)
    session_id = (await create_session(stack.client, auth=auth, tier="starter"))["id"]
    await housekeep_until_ready(stack, clock, auth=auth, session_id=session_id)
    (instance_id,) = fakes.vast.instances
    started = await act(stack.client, auth=auth, session_id=session_id, action="start")
    assert started.status_code == 200, started.text

    vast_orphan = fakes.vast.add_instance("sizzle-" + "0" * 32)
    vast_foreign = fakes.vast.add_instance("someone-elses-box")
    lambda_orphan = fakes.lam.add_instance("sizzle-unknown", instance_type=LAMBDA_4090)
    lambda_foreign = fakes.lam.add_instance("research-box", instance_type=LAMBDA_4090)
    runpod_foreign = fakes.runpod.add_pod("my-own-pod")

    await run_for(stack.state, clock, seconds=60, step=30)
    report = await stack.state.jobs.reconcile_now()
    assert sorted(report.orphans_destroyed) == sorted(
        [f"vast:{vast_orphan}", f"lambda:{lambda_orphan.id}"]
    )
    assert (report.sessions_lost, report.providers_skipped) == ([], [])
    assert fakes.vast.destroyed == [vast_orphan]
    assert set(fakes.vast.instances) == {instance_id, vast_foreign}
    assert fakes.vast.instances[vast_foreign]["actual_status"] == "running"
    assert fakes.lam.terminate_calls == [[lambda_orphan.id]]
    assert (lambda_orphan.status, lambda_foreign.status) == ("terminated", "active")
    assert fakes.runpod.terminated == []
    assert fakes.runpod.pods[runpod_foreign.id].desired_status == "RUNNING"
    body = await get_session(stack.client, auth=auth, session_id=session_id)
    assert (body["status"], body["charged_minutes"]) == ("active", 1)

    # The session's instance vanishes at Vast (the host went away). One check is not enough.
    del fakes.vast.instances[instance_id]
    clock.advance(30)
    report = await stack.state.jobs.reconcile_now()
    assert (report.orphans_destroyed, report.sessions_lost) == ([], [])
    assert (await get_session(stack.client, auth=auth, session_id=session_id))["status"] == "active"

    await run_for(stack.state, clock, seconds=30, step=30)  # minute 2 starts and is charged
    assert (await get_session(stack.client, auth=auth, session_id=session_id))[
        "charged_minutes"
    ] == 2
    report = await stack.state.jobs.reconcile_now()
    assert (report.orphans_destroyed, report.sessions_lost) == ([], [session_id])
    body = await get_session(stack.client, auth=auth, session_id=session_id)
    assert (body["status"], body["end_reason"]) == ("failed", "provider_lost")
    # billed only up to the last check that saw it running (60 s: one minute); minute 2 refunded
    assert (body["active_seconds"], body["charged_minutes"], body["cost_usd"]) == (60, 1, "0.15")
    # nothing else was touched on the way
    assert fakes.vast.destroyed == [vast_orphan]
    assert set(fakes.vast.instances) == {vast_foreign}
    assert lambda_foreign.status == "active"
    assert runpod_foreign.id in fakes.runpod.pods

    # a later round finds nothing more to do
    report = await stack.state.jobs.reconcile_now()
    assert (report.orphans_destroyed, report.sessions_lost, report.providers_skipped) == (
        [],
        [],
        [],
    )
