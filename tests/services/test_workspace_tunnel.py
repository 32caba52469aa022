"""Chat with a session on an instance reached over SSH: through the app, the tunnel, and a real
OpenSSH server standing for the instance, to a fake Ollama that listens on 127.0.0.1 only.
And its GPU, read on the instance with nvidia-smi over the same connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sizzle.clock import FakeClock, to_ms
from sizzle.db.database import Database
from sizzle.db.models import GpuSession
from sizzle.providers.base import ProviderContext
from sizzle.services import conversations
from sizzle.services.carry_on import carry_on
from sizzle.state import AppState
from sizzle.workload.gpu import GPU_QUERY, MIB
from tests.helpers import assert_error, log_in, make_user
from tests.providers.fakes.ollama import FakeOllama
from tests.ssh_instance import ScriptedSsh, authorize, instance_ollama
from tests.sshd import Sshd, needs_sshd

pytestmark = needs_sshd
CHAT = "/v1/chat/completions"
MODEL = "llama3.2:latest"
INSTANCE = "i-1"


@pytest.fixture
def ollama() -> Iterator[tuple[FakeOllama, int]]:
    """The instance's model server, on 127.0.0.1: reached only through the tunnel."""
    fake = FakeOllama(local={MODEL: 2_000}, loaded={MODEL: 2_000})
    with instance_ollama(fake) as port:
        yield fake, port


@pytest.fixture
async def instance(state: AppState) -> AsyncIterator[ScriptedSsh]:
    settings, clock, db = state.settings, state.clock, state.db
    provider = ScriptedSsh(ProviderContext(settings=settings, clock=clock, db=db))
    provider.provisioned.append(INSTANCE)
    state.providers[provider.name] = provider  # the workspace reads the same map
    yield provider
    await state.chat_proxy.close()  # the `client` fixture leaves the state open
    await state.tunnels.aclose()


async def active_session(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> tuple[str, dict[str, str]]:
    """An active session with a model on the scripted instance, its key made; (id, auth)."""
    user = await make_user(db, now=clock.now())
    async with db.transaction() as tx:
        tx.add(
            GpuSession(
                id="s-ssh",
                user_id=user.id,
                tier="starter",
                model=MODEL,
                status="active",
                provider=ScriptedSsh.name,
                instance_id=INSTANCE,
                price_micros_per_minute=1000,
                active_since_ms=to_ms(clock.now()),
                created_at=clock.now(),
            )
        )
    return "s-ssh", await log_in(client, email=user.email)


def chat(stream: bool) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


def content(body: str) -> str:
    """The text of an SSE answer's chunks."""
    words = []
    for line in body.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[len("data: ") :])["choices"]:
                words.append(choice["delta"].get("content") or "")
    return "".join(words)


@pytest.fixture
async def reachable(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    sshd: Sshd,
    instance: ScriptedSsh,
    ollama: tuple[FakeOllama, int],
) -> tuple[str, dict[str, str]]:
    """An active session whose instance answers SSH with the session's key; (id, auth)."""
    state.workspace.model_port = ollama[1]  # the fake's port stands for Ollama's 11434
    session_id, auth = await active_session(client, state.db, clock)
    await authorize(sshd, state.db, clock, session_id)
    instance.endpoint = sshd.endpoint
    return session_id, auth


async def test_a_chat_streams_back_through_the_tunnel(
    client: httpx.AsyncClient,
    sshd: Sshd,
    ollama: tuple[FakeOllama, int],
    reachable: tuple[str, dict[str, str]],
) -> None:
    _, auth = reachable
    response = await client.post(CHAT, json=chat(stream=True), headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert content(response.text) == "Hello from the node."
    assert response.text.rstrip().endswith("data: [DONE]")
    assert [kind for kind, _ in ollama[0].requests] == ["chat"]
    whole = await client.post(CHAT, json=chat(stream=False), headers=auth)
    assert whole.status_code == 200, whole.text
    assert sshd.accepted_logins() == 1  # the second chat took the open tunnel


async def test_a_chat_after_the_connection_dropped_opens_the_tunnel_again(
    client: httpx.AsyncClient, state: AppState, sshd: Sshd, reachable: tuple[str, dict[str, str]]
) -> None:
    session_id, auth = reachable
    assert (await client.post(CHAT, json=chat(stream=False), headers=auth)).status_code == 200
    sshd.drop_connections()
    async with asyncio.timeout(10):  # until the pool has seen the server hang up
        await state.tunnels._links[session_id].connection.wait_closed()
    again = await client.post(CHAT, json=chat(stream=True), headers=auth)
    assert again.status_code == 200, again.text
    assert content(again.text) == "Hello from the node."
    assert sshd.accepted_logins() == 2


async def test_before_the_instance_has_an_ssh_address_chat_is_not_ready(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, instance: ScriptedSsh
) -> None:
    _, auth = await active_session(client, state.db, clock)
    response = await client.post(CHAT, json=chat(stream=True), headers=auth)
    assert_error(response, 409, "chat_not_ready")


# nvidia-smi as its documentation says it answers GPU_QUERY (shared/contracts/providers.md,
# section 5): one CSV line per GPU; anything else asked is refused (exit 2, as for an invalid
# argument).
NVIDIA_SMI = f"""#!/bin/sh
if [ "$*" != "{GPU_QUERY.removeprefix("nvidia-smi ")}" ]; then
  echo "Invalid combination of input arguments." >&2
  exit 2
fi
echo "0, NVIDIA GeForce RTX 4090, 87, 20480, 24564, 66, 402.75"
"""


async def test_the_gpu_is_read_on_the_instance_over_the_sessions_connection(
    client: httpx.AsyncClient,
    sshd: Sshd,
    tmp_path: Path,
    reachable: tuple[str, dict[str, str]],
) -> None:
    tools = tmp_path / "instance-bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text(NVIDIA_SMI)
    (tools / "nvidia-smi").chmod(0o755)
    sshd.environment["PATH"] = f"{tools}:/usr/bin:/bin"
    sshd.restart()
    session_id, auth = reachable
    response = await client.get(f"/api/v1/sessions/{session_id}/metrics", headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["gpu"] == {
        "gpus": [
            {
                "index": 0,
                "name": "NVIDIA GeForce RTX 4090",
                "utilization_gpu_percent": 87,
                "memory_used_bytes": 20480 * MIB,
                "memory_total_bytes": 24564 * MIB,
                "temperature_c": 66,
                "power_watts": 402.75,
            }
        ],
        "error": None,
    }
    again = await client.get(f"/api/v1/sessions/{session_id}/metrics", headers=auth)
    assert again.json()["gpu"]["gpus"][0]["utilization_gpu_percent"] == 87
    assert sshd.accepted_logins() == 1  # the second reading took the open connection


async def test_an_instance_without_nvidia_smi_says_so_and_shows_no_numbers(
    client: httpx.AsyncClient, reachable: tuple[str, dict[str, str]]
) -> None:
    session_id, auth = reachable
    response = await client.get(f"/api/v1/sessions/{session_id}/metrics", headers=auth)
    assert response.status_code == 200, response.text
    gpu = response.json()["gpu"]
    assert gpu["gpus"] is None
    assert "a command on the instance failed (exit 127)" in gpu["error"]


async def test_a_saved_chat_carries_on_in_a_session_on_another_provider(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    ollama: tuple[FakeOllama, int],
    reachable: tuple[str, dict[str, str]],
) -> None:
    session_id, auth = reachable
    async with state.db.transaction() as tx:  # the chat began on an Ollama node, since stopped
        running = await tx.get(GpuSession, session_id)
        assert running is not None
        owner = running.user_id
        before = GpuSession(
            id="s-node",
            user_id=owner,
            tier="starter",
            model=MODEL,
            status="terminated",
            provider="ollama",
            price_micros_per_minute=1000,
            created_at=clock.now(),
        )
        tx.add(before)
        await tx.flush()
        chat = await conversations.create(
            tx,
            user_id=owner,
            now=clock.now(),
            caps=conversations.caps_of(state.settings),
            session_id=before.id,
        )
    turn = state.chat_proxy.saver.begin(
        conversation_id=chat.id,
        session_id="s-node",
        model=MODEL,
        messages=[{"role": "user", "content": "Remember 42."}],
    )
    turn.observe({"choices": [{"delta": {"content": "Noted: 42."}}]})
    turn.finish("ok", prompt_tokens=3, completion=3)
    await state.chat_proxy.saver.flush()

    async with state.db.read() as tx:
        there = await carry_on(tx, user_id=owner, chat_id=chat.id, model=MODEL)
    assert there is not None and there.href == f"/sessions/{session_id}?chat={chat.id}"
    saved = (await client.get(f"/api/v1/conversations/{chat.id}", headers=auth)).json()
    history = [{"role": m["role"], "content": m["content"]} for m in saved["messages"]]
    ask = {"model": MODEL, "messages": [*history, {"role": "user", "content": "Which number?"}]}
    headers = {**auth, "X-Sizzle-Conversation": chat.id, "X-Sizzle-Session": session_id}
    answer = await client.post(CHAT, json={**ask, "stream": True}, headers=headers)
    assert answer.status_code == 200, answer.text  # through the tunnel to the instance
    sent = [body for kind, body in ollama[0].requests if kind == "chat"][-1]
    assert [m["content"] for m in sent["messages"]][:2] == ["Remember 42.", "Noted: 42."]
    await state.chat_proxy.saver.flush()
    carried = (await client.get(f"/api/v1/conversations/{chat.id}", headers=auth)).json()
    assert carried["session_id"] == session_id
    assert [m["content"] for m in carried["messages"]] == [
        "Remember 42.",
        "Noted: 42.",
        "Which number?",
        "Hello from the node.",
    ]
