"""SSH tunnels to an instance, against a real OpenSSH server on loopback with the fake Ollama
behind it on 127.0.0.1: the path works, is pooled, comes back after a drop, and refuses a
wrong key or a changed host key."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.errors import (
    BadGateway,
    GatewayTimeout,
    HostKeyChanged,
    InstanceKeyRefused,
    InstanceUnreachable,
)
from sizzle.workload import keys
from sizzle.workload.keys import SessionKey
from sizzle.workload.tunnel import MemoryHostKeys, SshEndpoint, Tunnels
from tests.conftest import TEST_SECRET
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.server import free_port, serve
from tests.sshd import Sshd, needs_sshd

pytestmark = needs_sshd
SID = "s1"


@pytest.fixture
def ollama_port() -> Iterator[int]:
    """The fake Ollama on 127.0.0.1: the instance's model server, reached only through SSH."""
    with serve(fake_ollama_app(FakeOllama(local={"llama3.2:latest": 2_000}))) as url:
        yield int(url.rsplit(":", 1)[1])


@pytest.fixture
def key(sshd: Sshd) -> SessionKey:
    pair = keys.new_key_pair(SID)
    sshd.authorize(pair.public_key)
    return pair


@pytest.fixture
def host_keys() -> MemoryHostKeys:
    return MemoryHostKeys()


@pytest.fixture
async def tunnels(host_keys: MemoryHostKeys) -> AsyncIterator[Tunnels]:
    pool = Tunnels(host_keys, connect_timeout=5, command_timeout=10)
    yield pool
    await pool.aclose()


async def model_names(base_url: str) -> list[str]:
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        response = await http.get("/api/tags")
    response.raise_for_status()
    return [model["name"] for model in response.json()["models"]]


async def dropped(tunnels: Tunnels, session_id: str = SID) -> None:
    """Until the pool's connection has seen the server hang up (a socket event, no clock)."""
    async with asyncio.timeout(10):
        await tunnels._links[session_id].connection.wait_closed()


async def test_a_request_through_the_tunnel_reaches_the_model_server(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels, ollama_port: int
) -> None:
    url = await tunnels.local_url(SID, sshd.endpoint, key.private_key, remote_port=ollama_port)
    assert url.startswith("http://127.0.0.1:")
    assert await model_names(url) == ["llama3.2:latest"]


async def test_one_connection_serves_every_call(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels, ollama_port: int
) -> None:
    first = await tunnels.local_url(SID, sshd.endpoint, key.private_key, remote_port=ollama_port)
    second = await tunnels.local_url(SID, sshd.endpoint, key.private_key, remote_port=ollama_port)
    await model_names(first)
    await model_names(second)
    await tunnels.run(SID, sshd.endpoint, key.private_key, "true")
    assert first == second
    assert sshd.accepted_logins() == 1


async def test_a_dropped_connection_is_opened_again_on_the_next_call(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels, ollama_port: int
) -> None:
    await tunnels.local_url(SID, sshd.endpoint, key.private_key, remote_port=ollama_port)
    sshd.drop_connections()
    await dropped(tunnels)
    url = await tunnels.local_url(SID, sshd.endpoint, key.private_key, remote_port=ollama_port)
    assert await model_names(url) == ["llama3.2:latest"]
    assert sshd.accepted_logins() == 2


async def test_a_restarted_server_with_the_same_host_key_is_reached_again(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels
) -> None:
    await tunnels.run(SID, sshd.endpoint, key.private_key, "true")
    sshd.restart()
    await dropped(tunnels)
    assert await tunnels.run(SID, sshd.endpoint, key.private_key, "echo back") == "back\n"


async def test_a_key_the_instance_does_not_know_is_refused(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels
) -> None:
    stranger = keys.new_key_pair(SID)
    with pytest.raises(InstanceKeyRefused, match="refused the session's key"):
        await tunnels.run(SID, sshd.endpoint, stranger.private_key, "true")


async def test_the_first_host_key_is_pinned(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels, host_keys: MemoryHostKeys
) -> None:
    await tunnels.run(SID, sshd.endpoint, key.private_key, "true")
    assert host_keys.keys == {SID: sshd.host_public_key()}


async def test_a_changed_host_key_is_refused(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels, host_keys: MemoryHostKeys
) -> None:
    await tunnels.run(SID, sshd.endpoint, key.private_key, "true")
    pinned = sshd.host_public_key()
    sshd.new_host_key()
    sshd.restart()
    await dropped(tunnels)
    with pytest.raises(HostKeyChanged, match="another SSH host key"):
        await tunnels.run(SID, sshd.endpoint, key.private_key, "true")
    # a new process (a new pool) reading the same store refuses it too
    fresh = Tunnels(host_keys, connect_timeout=5)
    with pytest.raises(HostKeyChanged):
        await fresh.local_url(SID, sshd.endpoint, key.private_key)
    assert host_keys.keys[SID] == pinned


async def test_run_returns_what_the_command_printed(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels
) -> None:
    command = "printf 'name, memory.used [MiB]\\nNVIDIA H100, 1024 MiB\\n'"
    output = await tunnels.run(SID, sshd.endpoint, key.private_key, command)
    assert output == "name, memory.used [MiB]\nNVIDIA H100, 1024 MiB\n"


async def test_a_failing_command_is_a_bad_gateway(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels
) -> None:
    with pytest.raises(BadGateway, match="exit 3") as raised:
        await tunnels.run(SID, sshd.endpoint, key.private_key, "echo no gpu >&2; exit 3")
    assert raised.value.code == "instance_command_failed"
    assert "no gpu" in raised.value.message


async def test_a_command_that_does_not_finish_times_out(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels
) -> None:
    with pytest.raises(GatewayTimeout):
        await tunnels.run(SID, sshd.endpoint, key.private_key, "sleep 30", timeout=0.3)
    # the connection is still good for the next command
    assert await tunnels.run(SID, sshd.endpoint, key.private_key, "echo ok") == "ok\n"


async def test_closing_a_session_ends_its_connection(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels
) -> None:
    await tunnels.run(SID, sshd.endpoint, key.private_key, "true")
    await tunnels.close(SID)
    await tunnels.run(SID, sshd.endpoint, key.private_key, "true")
    assert sshd.accepted_logins() == 2


async def test_an_instance_that_does_not_answer_is_unreachable(
    key: SessionKey, tunnels: Tunnels
) -> None:
    nowhere = SshEndpoint(host="127.0.0.1", port=free_port(), username="root")
    with pytest.raises(InstanceUnreachable, match="could not reach"):
        await tunnels.run(SID, nowhere, key.private_key, "true")


async def test_host_keys_pin_in_the_database(
    sshd: Sshd, db: Database, clock: FakeClock, session_id: str
) -> None:
    async with db.transaction() as tx:
        pair = await keys.session_key(tx, session_id, secret=TEST_SECRET, now=clock.now())
    sshd.authorize(pair.public_key)
    pool = Tunnels(keys.DatabaseHostKeys(db), connect_timeout=5)
    try:
        assert await pool.run(session_id, sshd.endpoint, pair.private_key, "echo hi") == "hi\n"
    finally:
        await pool.aclose()
    async with db.read() as tx:
        assert await keys.pinned_host_key(tx, session_id) == sshd.host_public_key()


async def test_an_instance_that_never_speaks_ssh_times_out(key: SessionKey) -> None:
    pool = Tunnels(MemoryHostKeys(), connect_timeout=0.3)
    with socket.socket() as silent:  # accepts TCP (the kernel does), never sends a banner
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        endpoint = SshEndpoint(host="127.0.0.1", port=silent.getsockname()[1], username="root")
        with pytest.raises(InstanceUnreachable, match="could not reach"):
            await pool.run(SID, endpoint, key.private_key, "true")


async def test_a_closed_connection_is_let_go_of(
    sshd: Sshd, key: SessionKey, tunnels: Tunnels, ollama_port: int
) -> None:
    await tunnels.local_url(SID, sshd.endpoint, key.private_key, remote_port=ollama_port)
    sshd.drop_connections()  # as when the instance is destroyed
    async with asyncio.timeout(10):  # the pool's watcher of that connection has finished
        await asyncio.gather(*tunnels._watchers)
    assert SID not in tunnels._links
    assert tunnels.open_url(SID, sshd.endpoint, ollama_port) is None
