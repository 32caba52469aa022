"""Ready means the model answers: a session on an SSH-reached instance stays provisioning, showing
its boot's phase, until through the tunnel its model is listed and answers one token. The
instance is a real sshd on loopback; its "boot script" is the status file the test writes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.models import GpuSession, LaunchAttempt
from sizzle.providers.base import ProviderContext
from sizzle.services.breaker import ProviderStatus
from sizzle.services.readiness import pull_percent
from sizzle.state import AppState
from sizzle.workload.endpoint import SshEndpoint
from tests.helpers import get_session, sign_up
from tests.providers.fakes.ollama import FakeOllama
from tests.providers.fakes.server import free_port
from tests.ssh_instance import ScriptedSsh, authorize, instance_ollama
from tests.sshd import Sshd, needs_sshd

MODEL = "llama3.1:8b"


@dataclass
class Booting:
    """A session launched on the scripted SSH instance, with the instance's pieces."""

    auth: dict[str, str]
    session_id: str
    provider: ScriptedSsh
    ollama: FakeOllama
    state_dir: Path

    def boot_status(self, status: str, *, pull_log: tuple[dict[str, Any], ...] = ()) -> None:
        """What the boot script would have written by now."""
        (self.state_dir / "status").write_text(status + "\n")
        lines = "".join(json.dumps(line) + "\n" for line in pull_log)
        (self.state_dir / "pull.log").write_text(lines)


@pytest.fixture
def ollama() -> Iterator[tuple[FakeOllama, int]]:
    fake = FakeOllama(registry={MODEL: 2_000})
    with instance_ollama(fake) as port:
        yield fake, port


@pytest.fixture
async def booting(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    tmp_path: Path,
    ollama: tuple[FakeOllama, int],
) -> AsyncIterator[Booting]:
    """A session with a model, launched on the scripted instance (first at the demo's price)."""
    context = ProviderContext(settings=state.settings, clock=clock, db=state.db)
    provider = ScriptedSsh(context, prices=(0,))
    provider.name = "a-ssh"  # type: ignore[misc]
    for registry in (state.providers, state.orchestrator.providers):
        registry[provider.name] = provider
    state.orchestrator.status[provider.name] = ProviderStatus(provider.name)
    state.jobs.readiness.model_port = ollama[1]  # the fake's port stands for Ollama's 11434
    state.jobs.readiness.state_dir = str(tmp_path)
    auth = await sign_up(client)
    made = await client.post(
        "/api/v1/sessions", json={"tier": "starter", "model": MODEL}, headers=auth
    )
    assert made.status_code == 201, made.text
    yield Booting(auth, made.json()["id"], provider, ollama[0], tmp_path)
    await state.tunnels.aclose()


@pytest.fixture
async def reachable(booting: Booting, state: AppState, clock: FakeClock, sshd: Sshd) -> Booting:
    """Launched, and its instance answers SSH with the session's key."""
    await state.jobs.housekeep()
    assert booting.provider.provisioned == ["i-1"]
    await authorize(sshd, state.db, clock, booting.session_id)
    booting.provider.endpoint = sshd.endpoint
    return booting


async def session(client: httpx.AsyncClient, booting: Booting) -> dict[str, Any]:
    return await get_session(client, auth=booting.auth, session_id=booting.session_id)


async def launched_on(state: AppState, booting: Booting) -> str | None:
    """The provider the session's current instance is on."""
    async with state.db.transaction() as tx:
        row = await tx.get(GpuSession, booting.session_id)
    assert row is not None
    return row.provider


def test_the_pull_percent_comes_from_the_last_line() -> None:
    assert pull_percent('{"status": "pulling x", "completed": 500, "total": 2000}\n') == 25
    assert pull_percent("pulling 6a0746a1ec1a...  45% ▕███     ▏ 2.1 GB/4.7 GB\r") == 45
    assert pull_percent('{"status": "verifying sha256 digest"}\n') is None
    assert pull_percent("") is None


@needs_sshd
async def test_while_the_model_downloads_the_session_provisions_and_shows_the_percent(
    client: httpx.AsyncClient, state: AppState, reachable: Booting
) -> None:
    progress = {"status": "pulling abc", "digest": "sha256:ab", "completed": 500, "total": 2000}
    reachable.boot_status("pulling-model", pull_log=({"status": "pulling manifest"}, progress))
    await state.jobs.housekeep()
    body = await session(client, reachable)
    assert body["status"] == "provisioning"
    assert body["progress"] == {"phase": "downloading the model", "percent": 25}


@needs_sshd
async def test_a_model_server_that_does_not_list_the_model_is_not_ready(
    client: httpx.AsyncClient, state: AppState, reachable: Booting
) -> None:
    reachable.boot_status("ready")
    await state.jobs.housekeep()
    assert (await session(client, reachable))["status"] == "provisioning"
    assert reachable.ollama.requests == []  # nothing asked of a model that is not there


@needs_sshd
async def test_the_session_turns_ready_once_the_model_is_listed_and_answers_a_token(
    client: httpx.AsyncClient, state: AppState, reachable: Booting
) -> None:
    reachable.boot_status("ready")
    reachable.ollama.local[MODEL] = 2_000
    await state.jobs.housekeep()
    assert (await session(client, reachable))["status"] == "ready"
    [(kind, body)] = reachable.ollama.requests
    assert kind == "load" and body["model"] == MODEL and body["options"] == {"num_predict": 1}


@needs_sshd
async def test_a_failed_boot_destroys_the_instance_and_tries_the_next_offer(
    client: httpx.AsyncClient, state: AppState, reachable: Booting
) -> None:
    reachable.boot_status("failed: no GPU visible to nvidia-smi")
    await state.jobs.housekeep()
    assert reachable.provider.terminated == ["i-1"]
    assert (await session(client, reachable))["status"] == "provisioning"
    assert await launched_on(state, reachable) == "demo"
    async with state.db.transaction() as tx:
        [error] = await tx.scalars(
            select(LaunchAttempt.error).where(LaunchAttempt.outcome == "failed_to_start")
        )
    assert error is not None and "no GPU visible" in error


@needs_sshd
async def test_an_instance_whose_ssh_never_answers_times_out_to_the_next_offer(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, booting: Booting
) -> None:
    await state.jobs.housekeep()
    booting.provider.endpoint = SshEndpoint(host="127.0.0.1", port=free_port(), username="root")
    await state.jobs.housekeep()
    body = await session(client, booting)
    assert body["status"] == "provisioning"
    assert body["progress"] == {"phase": "machine starting", "percent": None}
    clock.advance(state.settings.provision_timeout_seconds + 1)
    await state.jobs.housekeep()
    assert booting.provider.terminated == ["i-1"]
    assert await launched_on(state, booting) == "demo"


@needs_sshd
async def test_a_session_without_a_model_is_ready_once_the_model_server_answers(
    client: httpx.AsyncClient, state: AppState, reachable: Booting
) -> None:
    async with state.db.transaction() as tx:
        row = await tx.get(GpuSession, reachable.session_id)
        assert row is not None
        row.model = None
    reachable.boot_status("ready")
    await state.jobs.housekeep()
    assert (await session(client, reachable))["status"] == "ready"
    assert reachable.ollama.requests == []
