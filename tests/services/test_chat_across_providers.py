"""A saved chat carried on across providers, over the real paths: begun in a session on the
operator's Ollama node (a fake node on loopback), the session stopped, then carried on in a new
session that the orchestrator puts at Lambda, cheapest once it has capacity (the real plugin
against the fake Lambda API, whose VM is a real sshd on loopback). The history reaches the VM's
model server through the new session's own SSH tunnel, and the chat is saved there."""

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
from sizzle.db.models import GpuSession
from sizzle.providers.base import ProviderContext
from sizzle.providers.lambdalabs.plugin import LambdaProvider
from sizzle.services.carry_on import carry_on
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import act, create_session, get_session, log_in, make_user, serve_here
from tests.providers.fakes.lambdalabs import FakeLambda, build_app
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.server import serve
from tests.ssh_instance import ReadyOnceReachable, authorize, instance_ollama
from tests.sshd import Sshd, needs_sshd

pytestmark = needs_sshd
MODEL, TAG = "llama3.2", "llama3.2:latest"
LAMBDA_TYPE = "gpu_1x_rtx4090"
CHAT = "/v1/chat/completions"
CHATS = "/api/v1/conversations"


@dataclass
class Site:
    state: AppState
    http: httpx.AsyncClient
    node: FakeOllama  # the operator's Ollama box
    lam: FakeLambda
    on_vm: FakeOllama  # the model server on the Lambda VM's loopback


@pytest.fixture
def node() -> Iterator[tuple[FakeOllama, str]]:
    fake = FakeOllama()
    with serve(fake_ollama_app(fake)) as url:
        yield fake, url


@pytest.fixture
def on_vm() -> Iterator[tuple[FakeOllama, int]]:
    fake = FakeOllama(local={TAG: 2_000}, loaded={TAG: 2_000})
    with instance_ollama(fake) as port:
        yield fake, port


@pytest.fixture
def lam(clock: FakeClock, sshd: Sshd) -> Iterator[tuple[FakeLambda, str]]:
    fake = FakeLambda(clock=clock, boot_polls=1, machine=sshd)
    fake.add_type(LAMBDA_TYPE, "1x RTX 4090 (24 GB PCIe)", 20, [])  # no capacity yet
    with serve(build_app(fake)) as url:
        yield fake, url


@pytest.fixture
async def site(
    settings: Settings,
    clock: FakeClock,
    db: Database,
    sshd: Sshd,
    node: tuple[FakeOllama, str],
    on_vm: tuple[FakeOllama, int],
    lam: tuple[FakeLambda, str],
) -> AsyncIterator[Site]:
    box = {"name": "box-1", "url": node[1], "gpu": "NVIDIA GeForce RTX 4090", "gpu_count": 1,
           "vram_gb": 24, "price_per_hour_usd": "0.33"}  # fmt: skip
    update: dict[str, Any] = {
        "providers": "ollama,lambda",
        "ollama_nodes": json.dumps([box]),
        "lambda_api_url": f"{lam[1]}/api/v1",
        "lambda_api_key": lam[0].api_key,
    }
    state = AppState.build(settings.model_copy(update=update), clock=clock, db=db)
    # the real plugin, logging in to its VMs where the test's sshd listens, as its user
    context = ProviderContext(settings=state.settings, clock=clock, db=db)
    plugin = LambdaProvider(context, ssh_port=sshd.port, ssh_user=sshd.username)
    await state.providers["lambda"].close()
    for registry in (state.providers, state.orchestrator.providers):
        registry["lambda"] = plugin
    # readiness through the private path has its own tests (tests/jobs/test_readiness.py)
    state.jobs.readiness = ReadyOnceReachable(
        db, state.tunnels, secret=state.settings.resolved_secret_key, clock=clock
    )
    state.workspace.model_port = on_vm[1]  # the fake's port stands for Ollama's 11434
    async with serve_here(create_app(state=state, run_jobs=False)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Site(state, http, node[0], lam[0], on_vm[0])
    await state.chat_proxy.close()
    await state.tunnels.aclose()
    for provider in state.providers.values():
        await provider.close()


async def started_on(site: Site, clock: FakeClock, auth: dict[str, str], provider: str) -> str:
    """A session with the model, launched where the orchestrator puts it, ready and started."""
    session_id = str((await create_session(site.http, auth=auth, model=MODEL))["id"])
    for _ in range(6):
        await site.state.jobs.housekeep()
        body = await get_session(site.http, auth=auth, session_id=session_id)
        if body["status"] == "ready":
            break
        clock.advance(5)
    async with site.state.db.read() as tx:
        session = await tx.get(GpuSession, session_id)
        assert session is not None and session.provider == provider, session
    if site.lam.machine is not None and provider == "lambda":
        # the session's key on the VM, as the VM's boot script puts it there
        await authorize(site.lam.machine, site.state.db, clock, session_id)
    started = await act(site.http, auth=auth, session_id=session_id, action="start")
    assert started.status_code == 200, started.text
    return session_id


async def ask(site: Site, auth: dict[str, str], chat_id: str, session_id: str, text: str) -> None:
    """The next question, sent with the saved chat so far (as the page does); streamed."""
    saved = (await site.http.get(f"{CHATS}/{chat_id}", headers=auth)).json()["messages"]
    history = [{"role": m["role"], "content": m["content"]} for m in saved]
    request = {"model": TAG, "messages": [*history, {"role": "user", "content": text}]}
    headers = {**auth, "X-Sizzle-Conversation": chat_id, "X-Sizzle-Session": session_id}
    answer = await site.http.post(CHAT, json={**request, "stream": True}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.text.rstrip().endswith("data: [DONE]")
    await site.state.chat_proxy.saver.flush()


def chats_seen(fake: FakeOllama) -> list[list[str]]:
    return [
        [m["content"] for m in body["messages"]] for kind, body in fake.requests if kind == "chat"
    ]


async def test_a_chat_begun_on_an_ollama_node_carries_on_at_lambda_through_the_tunnel(
    site: Site, db: Database, clock: FakeClock, sshd: Sshd
) -> None:
    user = await make_user(db, now=clock.now(), credit_usd="20")
    auth = await log_in(site.http, email=user.email)
    first = await started_on(site, clock, auth, "ollama")  # Lambda has no GPU free yet
    made = await site.http.post(CHATS, json={"session_id": first}, headers=auth)
    chat_id = made.json()["id"]
    await ask(site, auth, chat_id, first, "Remember 42.")
    assert (await act(site.http, auth=auth, session_id=first, action="stop")).is_success

    site.lam.capacity[LAMBDA_TYPE] = ["us-east-1"]  # now Lambda is cheapest: $0.20 an hour
    clock.advance(60)  # past the orchestrator's offer cache
    async with db.read() as tx:
        go_on = await carry_on(tx, user_id=user.id, chat_id=chat_id, model=TAG)
    assert go_on is not None and not go_on.running and f"chat={chat_id}" in go_on.href
    second = await started_on(site, clock, auth, "lambda")  # the launch the link leads to
    await ask(site, auth, chat_id, second, "Which number?")

    assert chats_seen(site.node) == [["Remember 42."]]
    assert chats_seen(site.on_vm) == [["Remember 42.", "Hello from the node.", "Which number?"]]
    assert sshd.accepted_logins() == 1  # the session's tunnel to the VM
    carried = (await site.http.get(f"{CHATS}/{chat_id}", headers=auth)).json()
    assert carried["session_id"] == second
    assert [(m["role"], m["content"]) for m in carried["messages"]] == [
        ("user", "Remember 42."),
        ("assistant", "Hello from the node."),
        ("user", "Which number?"),
        ("assistant", "Hello from the node."),
    ]
