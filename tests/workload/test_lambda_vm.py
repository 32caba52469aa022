"""A session with a model on Lambda, end to end: the real plugin against the fake Lambda API,
whose instance is a real sshd on loopback with the launch's key put on it (as Lambda does). The
provisioning jobs launch the VM naming Sizzle's key, log in with it once the VM is active, run
the VM boot script for real over SSH (a stub ollama and nvidia-smi on the VM's PATH), and the
session turns ready only once, through the session's own key and tunnel, the model answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.models import InstanceKey, LaunchAttempt
from sizzle.providers.base import ProviderContext
from sizzle.providers.lambdalabs.plugin import LambdaProvider
from sizzle.services.breaker import ProviderStatus
from sizzle.state import AppState
from tests.helpers import get_session, sign_up
from tests.providers.fakes.lambdalabs import FakeLambda, build_app
from tests.providers.fakes.server import serve
from tests.sshd import Sshd, needs_sshd
from tests.workload.vm import BOOT_SECONDS, Vm, vm

MODEL = "llama3.2"
TYPE = "gpu_1x_rtx4090"


@dataclass
class OnLambda:
    machine: Vm
    sshd: Sshd
    fake: FakeLambda
    lam: LambdaProvider
    auth: dict[str, str]
    session_id: str


async def lambda_session(
    state: AppState, client: httpx.AsyncClient, clock: FakeClock, machine: Vm, sshd: Sshd, url: str
) -> tuple[LambdaProvider, dict[str, str], str]:
    """The real Lambda plugin in the app, the only provider; a session with a model created."""
    settings = state.settings.model_copy(
        update={"lambda_api_key": "lambda-test-key", "lambda_api_url": f"{url}/api/v1"}
    )
    context = ProviderContext(settings=settings, clock=clock, db=state.db)
    lam = LambdaProvider(context, ssh_port=sshd.port, ssh_user=sshd.username)
    for registry in (state.providers, state.orchestrator.providers):
        registry.clear()
        registry[lam.name] = lam
    state.orchestrator.status[lam.name] = ProviderStatus(lam.name)
    state.jobs.readiness.model_port = machine.ollama_port
    state.jobs.readiness.state_dir = str(machine.state_dir)
    auth = await sign_up(client)
    made = await client.post(
        "/api/v1/sessions", json={"tier": "starter", "model": MODEL}, headers=auth
    )
    assert made.status_code == 201, made.text
    return lam, auth, made.json()["id"]


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[tuple[Vm, Sshd]]:
    with vm(tmp_path) as booted:
        yield booted


@pytest.fixture
async def on_lambda(
    state: AppState,
    client: httpx.AsyncClient,
    clock: FakeClock,
    machine: tuple[Vm, Sshd],
) -> AsyncIterator[OnLambda]:
    vm_, sshd = machine
    fake = FakeLambda(clock=clock, boot_polls=2, machine=sshd)
    fake.add_type(TYPE, "1x RTX 4090 (24 GB PCIe)", 0, ["us-east-1"])
    with serve(build_app(fake)) as url:
        lam, auth, session_id = await lambda_session(state, client, clock, vm_, sshd, url)
        yield OnLambda(vm_, sshd, fake, lam, auth, session_id)
        await state.tunnels.aclose()
        await lam.close()


async def session(client: httpx.AsyncClient, on: OnLambda) -> dict[str, Any]:
    return await get_session(client, auth=on.auth, session_id=on.session_id)


async def housekeep_until(
    state: AppState, client: httpx.AsyncClient, on: OnLambda, done: Any
) -> dict[str, Any]:
    """Provisioning rounds until `done(session)`: the VM boots in real time, the clock stays."""
    deadline = time.monotonic() + BOOT_SECONDS
    while True:
        await state.jobs.housekeep()
        body = await session(client, on)
        if done(body):
            return body
        assert time.monotonic() < deadline, f"stuck at {body['status']} {body.get('progress')}"
        await asyncio.sleep(0.1)


@needs_sshd
async def test_a_model_session_on_lambda_is_ready_once_its_model_answers(
    state: AppState, client: httpx.AsyncClient, on_lambda: OnLambda
) -> None:
    on = on_lambda
    (on.machine.root / "mute").touch()  # the model is pulled but does not answer yet

    await state.jobs.housekeep()  # launched; the VM boots (no address yet)
    (launch,) = on.fake.launches
    assert launch["ssh_key_names"] == [on.lam.account.name]
    assert (await session(client, on))["status"] == "provisioning"
    (instance,) = on.fake.instances.values()
    assert (instance.status, instance.ip) == ("booting", None)

    body = await housekeep_until(
        state,
        client,
        on,
        lambda b: (b.get("progress") or {}).get("phase") == "loading into GPU memory",
    )
    assert body["status"] == "provisioning"  # listed, but not answering: not ready
    assert on.machine.status() == "ready"

    (on.machine.root / "mute").unlink()
    body = await housekeep_until(state, client, on, lambda b: b["status"] == "ready")

    # what is on the VM: Lambda's key (ours at Lambda), then the session's, added by vm.sh
    async with state.db.transaction() as tx:
        pair = await tx.get(InstanceKey, on.session_id)
    assert pair is not None
    authorized = on.machine.authorized_keys.read_text().splitlines()
    assert authorized == [on.lam.account.public_key, pair.public_key]
    assert pair.host_key == on.sshd.host_public_key()  # pinned at the boot login
    assert on.machine.served()["OLLAMA_HOST"] == f"127.0.0.1:{on.machine.ollama_port}"
    assert on.machine.boot_log().count("booting in the background") == 1


@needs_sshd
async def test_a_vm_without_a_gpu_fails_its_boot_and_is_terminated_at_lambda(
    state: AppState, client: httpx.AsyncClient, on_lambda: OnLambda
) -> None:
    on = on_lambda
    (on.machine.bin_dir / "nvidia-smi").write_text("#!/bin/sh\n")  # lists no GPU

    body = await housekeep_until(state, client, on, lambda b: b["status"] != "provisioning")
    assert body["status"] == "failed"  # no other offer to try here
    (instance,) = on.fake.instances.values()
    assert instance.status == "terminated"
    async with state.db.transaction() as tx:
        attempts = list(await tx.scalars(select(LaunchAttempt)))
    assert [(a.provider, a.outcome) for a in attempts] == [("lambda", "failed_to_start")]
    assert "no GPU visible to nvidia-smi" in (attempts[0].error or "")
