"""Idle auto-stop on an operator's Ollama node, over real HTTP on loopback: Sizzle served by
uvicorn, the node a fake Ollama, its GPU read by the real node agent app (`sizzle node-agent`)
from a stand-in NVML reading. A node cannot pause, so an idle session is stopped (end reason
`idle`), billed exactly to its limit; a chat request, or the GPU busier than the threshold,
is use."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.node_agent import create_agent_app
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import act, create_session, get_session, me, run_for, serve_here
from tests.helpers import signed_in_user as paying_user
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.server import serve

MINUTE = 60
MODEL = "llama3.1-8b"


@dataclass
class Node:
    """The node's GPU as NVML would read it now; `failing`: the reading breaks."""

    utilization: int = 0
    failing: bool = False

    def read(self) -> dict[str, Any]:
        if self.failing:
            raise RuntimeError("NVML went away")
        gpu = {
            "index": 0,
            "name": "NVIDIA GeForce RTX 4090",
            "utilization_gpu_percent": self.utilization,
            "memory_used_bytes": 6 * 1024**3,
            "memory_total_bytes": 24 * 1024**3,
            "temperature_c": 50,
            "power_watts": 90.0,
        }
        return {"driver": "550.54", "gpus": [gpu]}


@dataclass
class Stack:
    node: Node
    state: AppState
    http: httpx.AsyncClient


@pytest.fixture
def node_urls() -> Iterator[tuple[Node, str, str]]:
    gpu = Node()
    ollama = FakeOllama(registry={"llama3.1:8b": 2_000}, reply=["Hi", " there"])
    with serve(fake_ollama_app(ollama)) as ollama_url, serve(create_agent_app(gpu.read)) as agent:
        yield gpu, ollama_url, agent


@pytest.fixture
async def stack(
    settings: Settings, clock: FakeClock, db: Database, node_urls: tuple[Node, str, str]
) -> AsyncIterator[Stack]:
    gpu, ollama_url, agent_url = node_urls
    box = {
        "name": "box-1",
        "url": ollama_url,
        "agent_url": agent_url,
        "gpu": "NVIDIA GeForce RTX 4090",
        "gpu_count": 1,
        "vram_gb": 24,
        "price_per_hour_usd": "0.30",
    }
    update = {"providers": "ollama", "ollama_nodes": json.dumps([box])}
    state = AppState.build(settings.model_copy(update=update), clock=clock, db=db)
    app = create_app(state=state, run_jobs=False)
    async with serve_here(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield Stack(gpu, state, http)
    await state.close()


async def _started(stack: Stack, clock: FakeClock, db: Database) -> tuple[dict[str, str], str]:
    auth = await paying_user(stack.http, db, clock=clock, free_minutes=0, credit_usd="10")
    session_id = (await create_session(stack.http, auth=auth, model=MODEL))["id"]
    for _ in range(5):
        await stack.state.jobs.run_once()
        if (await get_session(stack.http, auth=auth, session_id=session_id))["status"] == "ready":
            break
    started = await act(stack.http, auth=auth, session_id=session_id, action="start")
    assert started.json()["status"] == "active", started.text
    return auth, session_id


async def _after(stack: Stack, clock: FakeClock, *, seconds: float) -> None:
    clock.advance(seconds)
    await stack.state.jobs.housekeep()


async def test_an_idle_session_on_a_node_is_stopped_at_its_limit_and_billed_exactly(
    stack: Stack, clock: FakeClock, db: Database
) -> None:
    auth, session_id = await _started(stack, clock, db)
    # Metering passes the limit before the idle pass: minute 16, begun at the limit, is not
    # charged (nor refunded later).
    await run_for(stack.state, clock, seconds=15 * MINUTE + 5)
    await stack.state.jobs.housekeep()
    body = await get_session(stack.http, auth=auth, session_id=session_id)
    assert (body["status"], body["end_reason"]) == ("terminated", "idle")
    assert (body["active_seconds"], body["charged_minutes"], body["charged_usd"]) == (
        900,
        15,
        "2.25",
    )
    assert (await me(stack.http, auth=auth))["balance_usd"] == "7.75"


async def test_a_chat_request_is_use(stack: Stack, clock: FakeClock, db: Database) -> None:
    auth, session_id = await _started(stack, clock, db)
    await _after(stack, clock, seconds=10 * MINUTE)
    chat = await stack.http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers=auth,
    )
    assert chat.status_code == 200, chat.text
    await _after(stack, clock, seconds=15 * MINUTE - 1)  # 25 min running, 15 since the chat
    assert (await get_session(stack.http, auth=auth, session_id=session_id))["status"] == "active"
    await _after(stack, clock, seconds=1)
    body = await get_session(stack.http, auth=auth, session_id=session_id)
    assert (body["end_reason"], body["active_seconds"], body["charged_minutes"]) == (
        "idle",
        25 * MINUTE,
        25,
    )


async def test_listing_my_models_is_use(stack: Stack, clock: FakeClock, db: Database) -> None:
    auth, session_id = await _started(stack, clock, db)
    await _after(stack, clock, seconds=14 * MINUTE)
    listed = await stack.http.get("/v1/models", headers=auth)
    assert [m["session_id"] for m in listed.json()["data"]] == [session_id]
    await _after(stack, clock, seconds=14 * MINUTE)
    body = await get_session(stack.http, auth=auth, session_id=session_id)
    assert (body["status"], body["idle_seconds_left"]) == ("active", MINUTE)


async def test_a_gpu_busier_than_the_threshold_keeps_it_running(
    stack: Stack, clock: FakeClock, db: Database
) -> None:
    auth, session_id = await _started(stack, clock, db)
    stack.node.utilization = 42  # a job on the GPU, started over SSH: no request through Sizzle
    await _after(stack, clock, seconds=13 * MINUTE)
    body = await get_session(stack.http, auth=auth, session_id=session_id)
    assert (body["status"], body["idle_seconds_left"]) == ("active", 15 * MINUTE)  # read: in use
    stack.node.utilization = 10  # at the threshold, not above it: idle
    await _after(stack, clock, seconds=13 * MINUTE)
    assert (await get_session(stack.http, auth=auth, session_id=session_id))["status"] == "active"
    await _after(stack, clock, seconds=2 * MINUTE)
    body = await get_session(stack.http, auth=auth, session_id=session_id)
    assert (body["end_reason"], body["active_seconds"]) == ("idle", 28 * MINUTE)


async def test_a_gpu_that_cannot_be_read_is_not_taken_for_use(
    stack: Stack, clock: FakeClock, db: Database
) -> None:
    auth, session_id = await _started(stack, clock, db)
    stack.node.failing = True
    await _after(stack, clock, seconds=15 * MINUTE)
    body = await get_session(stack.http, auth=auth, session_id=session_id)
    assert (body["end_reason"], body["active_seconds"]) == ("idle", 15 * MINUTE)


async def test_a_busy_gpu_read_after_the_limit_has_the_held_back_minute_charged(
    stack: Stack, clock: FakeClock, db: Database
) -> None:
    auth, session_id = await _started(stack, clock, db)
    stack.node.utilization = 42
    await run_for(stack.state, clock, seconds=15 * MINUTE + 30, step=15)  # no idle pass yet
    body = await get_session(stack.http, auth=auth, session_id=session_id)
    assert (body["status"], body["charged_minutes"]) == ("active", 15)  # none past the limit
    await stack.state.jobs.housekeep()  # the GPU is read busy: in use, the limit moves
    await stack.state.jobs.meter()  # minute 16, running since the limit, is charged
    body = await get_session(stack.http, auth=auth, session_id=session_id)
    assert (body["status"], body["charged_minutes"]) == ("active", 16)
