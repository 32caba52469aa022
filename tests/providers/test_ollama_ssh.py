"""An operator's Ollama node reached over SSH: a real OpenSSH server on loopback stands for the
node, with the fake Ollama on its 127.0.0.1; every probe, pull, chat and GPU reading goes
through the tunnel, with the operator's key and the node's configured host key only."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.domain.tiers import TIERS
from sizzle.errors import BadRequest
from sizzle.providers.ollama.models import parse_nodes
from sizzle.providers.ollama.plugin import OllamaProvider
from sizzle.settings import Settings
from sizzle.workload.gpu import MIB
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.server import serve
from tests.providers.test_ollama import node, ollama
from tests.services.test_workspace_tunnel import NVIDIA_SMI
from tests.sshd import Sshd, needs_sshd

pytestmark = needs_sshd
LINK = "ollama-node:box-ssh"  # the tunnels' key of the node's connection


@pytest.fixture
def fake() -> Iterator[tuple[FakeOllama, str]]:
    state = FakeOllama()
    with serve(fake_ollama_app(state)) as url:
        yield state, url


@pytest.fixture
def operator_key(tmp_path: Path, sshd: Sshd) -> Path:
    """The operator's key, authorized on the node."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = tmp_path / "node_key"
    key.write_private_key(path)
    path.chmod(0o600)
    sshd.authorize(key.export_public_key().decode())
    return path


def ssh_node(sshd: Sshd, ollama_url: str, **overrides: Any) -> dict[str, Any]:
    entry = node("box-ssh", ollama_url)
    entry["ssh"] = f"{sshd.username}@127.0.0.1:{sshd.port}"
    entry["ssh_host_key"] = sshd.host_public_key()
    return entry | overrides


def over_ssh(
    settings: Settings, clock: FakeClock, db: Database, nodes: list[dict[str, Any]], key: Path
) -> OllamaProvider:
    return ollama(settings.model_copy(update={"ollama_ssh_key_file": key}), clock, db, nodes)


Connect = Callable[..., OllamaProvider]


@pytest.fixture
async def connect(
    settings: Settings,
    clock: FakeClock,
    db: Database,
    sshd: Sshd,
    fake: tuple[FakeOllama, str],
    operator_key: Path,
) -> AsyncIterator[Connect]:
    """The plugin with the one node behind the sshd (`key` and node fields as given); closed
    at the end of the test."""
    made: list[OllamaProvider] = []

    def make(key: Path = operator_key, **overrides: Any) -> OllamaProvider:
        made.append(over_ssh(settings, clock, db, [ssh_node(sshd, fake[1], **overrides)], key))
        return made[-1]

    yield make
    for provider in made:
        await provider.close()


async def test_offers_pulls_and_chat_go_through_one_tunnel(
    connect: Connect, sshd: Sshd, fake: tuple[FakeOllama, str]
) -> None:
    state, url = fake
    provider = connect()
    (offer,) = await provider.offers(TIERS["starter"])
    assert await provider.provision(offer, session_id="s1", model="llama3.2") == "box-ssh"
    assert "llama3.2:latest" in state.loaded
    chat_url = await provider.chat_base_url("box-ssh")
    assert chat_url is not None and chat_url != url  # the local end of the tunnel
    async with httpx.AsyncClient(base_url=chat_url) as http:
        tags = await http.get("/api/tags")
    assert tags.status_code == 200
    assert [m["name"] for m in tags.json()["models"]] == ["llama3.2:latest"]
    assert sshd.accepted_logins() == 1  # probe, pull, load and chat shared one connection


async def test_a_node_presenting_another_host_key_is_refused_and_shown_unhealthy(
    connect: Connect, sshd: Sshd, fake: tuple[FakeOllama, str]
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    provider = connect(ssh_host_key=other)
    assert await provider.offers(TIERS["starter"]) == []
    error = provider.node_health["box-ssh"].error
    assert error is not None and "host key" in error
    assert sshd.accepted_logins() == 0
    assert fake[0].requests == []
    health = await provider.health()
    assert not health.healthy and "box-ssh unhealthy" in (health.detail or "")


async def test_a_key_the_node_does_not_authorize_is_a_node_that_does_not_answer(
    connect: Connect, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(stranger)
    provider = connect(key=stranger)
    assert await provider.offers(TIERS["starter"]) == []
    error = provider.node_health["box-ssh"].error
    assert error is not None and "box-ssh" in error


async def test_a_dropped_connection_is_opened_again(connect: Connect, sshd: Sshd) -> None:
    provider = connect()
    assert len(await provider.offers(TIERS["starter"])) == 1
    box = provider.nodes["box-ssh"]
    assert box.ssh_endpoint is not None
    sshd.drop_connections()
    for _ in range(250):  # until this side has seen the connection go (a real socket)
        if provider.reach.tunnels.open_url(LINK, box.ssh_endpoint, box.ollama_port) is None:
            break
        await asyncio.sleep(0.02)
    assert len(await provider.offers(TIERS["starter"])) == 1
    assert sshd.accepted_logins() == 2


async def test_gpu_readings_come_from_nvidia_smi_on_the_node(
    connect: Connect, sshd: Sshd, tmp_path: Path
) -> None:
    tools = tmp_path / "node-bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text(NVIDIA_SMI)
    (tools / "nvidia-smi").chmod(0o755)
    sshd.environment["PATH"] = f"{tools}:/usr/bin:/bin"
    sshd.restart()
    metrics = await connect().metrics("box-ssh")
    assert metrics is not None
    assert metrics["gpus"][0]["memory_total_bytes"] == 24564 * MIB
    assert metrics["gpus"][0]["utilization_gpu_percent"] == 87
    assert metrics["models"] == []


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ({"ssh_host_key": None}, "needs its `ssh_host_key`"),
        ({"ssh_host_key": "ssh-ed25519 not-base64"}, "must be one SSH public key line"),
        ({"ssh": "root@host name"}, "must be user@host or user@host:port"),
        ({"ssh": "root@10.0.0.5:70000"}, "between 1 and 65535"),
        ({"url": "http://10.0.0.5:11434"}, "where it listens on the node itself"),
        ({"agent_url": "http://10.0.0.5:9400"}, "where it listens on the node itself"),
    ],
)
def test_a_node_reached_over_ssh_is_configured_completely(
    settings: Settings,
    clock: FakeClock,
    db: Database,
    sshd: Sshd,
    operator_key: Path,
    overrides: dict[str, Any],
    said: str,
) -> None:
    entry = ssh_node(sshd, "http://127.0.0.1:11434", **overrides)
    with pytest.raises(BadRequest) as refused:
        over_ssh(settings, clock, db, [entry], operator_key)
    assert said in refused.value.message


def test_a_node_reached_over_ssh_needs_the_operators_key(
    settings: Settings, clock: FakeClock, db: Database, sshd: Sshd, tmp_path: Path
) -> None:
    entry = ssh_node(sshd, "http://127.0.0.1:11434")
    with pytest.raises(BadRequest, match="set SIZZLE_OLLAMA_SSH_KEY_FILE"):
        ollama(settings, clock, db, [entry])
    (tmp_path / "garbage").write_text("not a key")
    with pytest.raises(BadRequest, match="not an unencrypted private key"):
        over_ssh(settings, clock, db, [entry], tmp_path / "garbage")
    with pytest.raises(BadRequest, match="No such file"):
        over_ssh(settings, clock, db, [entry], tmp_path / "missing")


def test_the_ssh_address_reads_as_an_endpoint() -> None:
    host_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    entry = node("n", "http://127.0.0.1:11500", ssh="ops@gpu-1.lan:2222", ssh_host_key=host_key)
    (parsed,) = parse_nodes(json.dumps([entry]))
    assert parsed.ssh_endpoint is not None
    assert (parsed.ssh_endpoint.host, parsed.ssh_endpoint.port) == ("gpu-1.lan", 2222)
    assert parsed.ssh_endpoint.username == "ops"
    assert parsed.ollama_port == 11500
