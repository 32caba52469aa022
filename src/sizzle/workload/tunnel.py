"""SSH tunnels to rented instances: one pooled connection per session, per process.

The model server listens on the instance's loopback only; Sizzle reaches it through a local
port forward over SSH, authenticated with the session's own key (`keys`). The same connection
runs commands on the instance (`nvidia-smi` where there is no agent). A connection that
dropped is opened again on the next call; keepalives notice one that died silently.

The instance's host key is pinned on first connect: that connect accepts the key the server
presents and records it in a `HostKeyStore`; every later connect accepts only that key, so a
changed host key (another machine behind the address) is refused with `HostKeyChanged`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import asyncssh
import structlog
from asyncssh.known_hosts import KnownHostsArg

from sizzle.errors import (
    BadGateway,
    GatewayTimeout,
    HostKeyChanged,
    InstanceKeyRefused,
    InstanceUnreachable,
)
from sizzle.workload.endpoint import SshEndpoint

__all__ = ["HostKeyStore", "MemoryHostKeys", "SshEndpoint", "Tunnels", "openssh_public"]

log = structlog.get_logger(__name__)

OLLAMA_PORT = 11434
CONNECT_TIMEOUT_SECONDS = 20.0
COMMAND_TIMEOUT_SECONDS = 30.0
KEEPALIVE_INTERVAL_SECONDS = 15.0
KEEPALIVE_COUNT_MAX = 4  # unanswered keepalives before the connection counts as dropped
_CLOSE_WAIT_SECONDS = 5.0
_NO_OP_SECONDS = 10.0

# The session's private key, or how to get it (unsealed only when a connection is opened).
KeySource = asyncssh.SSHKey | Callable[[], Awaitable[asyncssh.SSHKey]]


class HostKeyStore(Protocol):
    """Where pinned host keys are kept (the database; memory in tests)."""

    async def pinned(self, session_id: str) -> str | None:
        """The host key pinned for the session's instance (OpenSSH form), if any."""
        ...

    async def pin(self, session_id: str, host_key: str) -> str:
        """Pin `host_key` unless a key is pinned already; the key pinned now."""
        ...


class MemoryHostKeys:
    """A HostKeyStore in a dict: for tests, and for a process that keeps nothing."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    async def pinned(self, session_id: str) -> str | None:
        return self.keys.get(session_id)

    async def pin(self, session_id: str, host_key: str) -> str:
        return self.keys.setdefault(session_id, host_key)


def openssh_public(key: asyncssh.SSHKey) -> str:
    """A public key as one OpenSSH line, without a comment: `<algorithm> <base64>`."""
    algorithm, blob, *_ = key.export_public_key("openssh").decode().split()
    return f"{algorithm} {blob}"


@dataclass
class _Link:
    endpoint: SshEndpoint
    connection: asyncssh.SSHClientConnection
    forwards: dict[int, asyncssh.SSHListener] = field(default_factory=dict)

    def is_open(self) -> bool:
        return not self.connection.is_closed()


class Tunnels:
    """A per-process pool of SSH connections to instances, one per session."""

    def __init__(
        self,
        host_keys: HostKeyStore,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        command_timeout: float = COMMAND_TIMEOUT_SECONDS,
        keepalive_interval: float = KEEPALIVE_INTERVAL_SECONDS,
        keepalive_count_max: int = KEEPALIVE_COUNT_MAX,
    ) -> None:
        self._host_keys = host_keys
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._keepalive_interval = keepalive_interval
        self._keepalive_count_max = keepalive_count_max
        self._links: dict[str, _Link] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    async def local_url(
        self,
        session_id: str,
        endpoint: SshEndpoint,
        key: asyncssh.SSHKey,
        remote_port: int = OLLAMA_PORT,
    ) -> str:
        """`http://127.0.0.1:<port>`: a local forward to the instance's 127.0.0.1:remote_port."""
        async with self._lock(session_id):
            link = await self._link(session_id, endpoint, key)
            listener = link.forwards.get(remote_port)
            if listener is None:
                try:
                    listener = await link.connection.forward_local_port(
                        "127.0.0.1", 0, "127.0.0.1", remote_port
                    )
                except (OSError, asyncssh.Error) as exc:
                    raise InstanceUnreachable(f"could not open a tunnel: {exc}") from exc
                link.forwards[remote_port] = listener
            return f"http://127.0.0.1:{listener.get_port()}"

    def open_url(
        self, session_id: str, endpoint: SshEndpoint, remote_port: int = OLLAMA_PORT
    ) -> str | None:
        """The local URL of the session's forward to `endpoint`, while its connection is open;
        None otherwise (then `local_url`, with the key, opens it again)."""
        link = self._links.get(session_id)
        if link is None or not link.is_open() or link.endpoint != endpoint:
            return None
        listener = link.forwards.get(remote_port)
        return None if listener is None else f"http://127.0.0.1:{listener.get_port()}"

    async def run(
        self,
        session_id: str,
        endpoint: SshEndpoint,
        key: KeySource,
        command: str,
        *,
        timeout: float | None = None,
    ) -> str:
        """What `command` printed on the instance; BadGateway if it failed, GatewayTimeout if
        it did not finish within the timeout. Not retried: a command may not be idempotent."""
        async with self._lock(session_id):
            link = await self._link(session_id, endpoint, key)
        return await self._run_on(link.connection, command, timeout)

    async def run_once(
        self,
        session_id: str,
        endpoint: SshEndpoint,
        key: asyncssh.SSHKey,
        command: str,
        *,
        timeout: float | None = None,
    ) -> str:
        """`run` on a connection of its own, closed once the command ends: for a login with
        another key than the session's (the provider's, which boots a bare VM), kept out of the
        pool so that it never stands in for the session's connection. The instance's host key
        is pinned (or checked) for the session all the same."""
        connection = await self._connect(session_id, endpoint, key)
        try:
            return await self._run_on(connection, command, timeout)
        finally:
            connection.close()
            with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
                async with asyncio.timeout(_CLOSE_WAIT_SECONDS):
                    await connection.wait_closed()

    async def _run_on(
        self, connection: asyncssh.SSHClientConnection, command: str, timeout: float | None
    ) -> str:
        process: asyncssh.SSHClientProcess[str] | None = None
        try:
            async with asyncio.timeout(timeout or self._command_timeout):
                process = await connection.create_process(command, stdin=asyncssh.DEVNULL)
                result = await process.wait()
        except TimeoutError as exc:
            raise GatewayTimeout("a command on the instance did not finish in time") from exc
        except (OSError, asyncssh.Error) as exc:
            raise InstanceUnreachable(f"could not run a command on the instance: {exc}") from exc
        finally:
            if process is not None:
                process.close()
        if result.exit_status != 0:
            detail = str(result.stderr or "").strip()[-300:]
            raise BadGateway(
                f"a command on the instance failed (exit {result.exit_status}): {detail}",
                code="instance_command_failed",
            )
        return str(result.stdout or "")

    async def close(self, session_id: str) -> None:
        """Close the session's connection and its forwards (silent if there is none)."""
        async with self._lock(session_id):
            link = self._links.pop(session_id, None)
        self._locks.pop(session_id, None)
        if link is not None:
            await _shut(link)

    async def aclose(self) -> None:
        """Close every connection: at shutdown."""
        links, self._links = list(self._links.values()), {}
        self._locks.clear()
        await asyncio.gather(*(_shut(link) for link in links))
        for watcher in list(self._watchers):
            watcher.cancel()

    def _lock(self, session_id: str) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())

    async def _link(self, session_id: str, endpoint: SshEndpoint, key: KeySource) -> _Link:
        """The session's open connection, opened (again) when there is none, it dropped, or the
        session's instance moved. Called with the session's lock held."""
        link = self._links.get(session_id)
        if link is not None and link.is_open() and link.endpoint == endpoint:
            return link
        if link is not None:
            del self._links[session_id]
            reason = "dropped" if not link.is_open() else "instance moved"
            log.info("ssh connection reopened", session_id=session_id, reason=reason)
            await _shut(link)
        if not isinstance(key, asyncssh.SSHKey):
            key = await key()
        connection = await self._connect(session_id, endpoint, key)
        await _without_nagle(connection)
        link = _Link(endpoint=endpoint, connection=connection)
        self._links[session_id] = link
        watcher = asyncio.create_task(self._forget_when_closed(session_id, link))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return link

    async def _forget_when_closed(self, session_id: str, link: _Link) -> None:
        """Once the connection has closed (the instance destroyed, the session ended, a
        drop), the pool lets go of it and its forwards: a long-running process holds no closed
        connection of a session that no longer talks to it. A later call connects anew."""
        await link.connection.wait_closed()
        if self._links.get(session_id) is link:
            del self._links[session_id]
            for listener in link.forwards.values():
                listener.close()

    async def _connect(
        self, session_id: str, endpoint: SshEndpoint, key: asyncssh.SSHKey
    ) -> asyncssh.SSHClientConnection:
        pinned = await self._host_keys.pinned(session_id)
        # Pinned: only that key is trusted (asyncssh then asks the server for its algorithm).
        # Not yet: the first connect takes the key the server presents, and records it.
        known_hosts: KnownHostsArg = None
        if pinned is not None:  # trusted keys, then CA keys, revoked keys and X.509 ones: none
            known_hosts = ([asyncssh.import_public_key(pinned)], [], [], [], [], [], [])
        where = f"{endpoint.host}:{endpoint.port}"
        try:
            connection = await asyncssh.connect(
                endpoint.host,
                endpoint.port,
                username=endpoint.username,
                client_keys=[key],
                known_hosts=known_hosts,
                preferred_auth="publickey",
                agent_path=None,
                config=None,  # no ~/.ssh/config of whoever runs Sizzle
                connect_timeout=self._connect_timeout,
                login_timeout=self._connect_timeout,
                keepalive_interval=self._keepalive_interval,
                keepalive_count_max=self._keepalive_count_max,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            log.warning("ssh host key changed", session_id=session_id, endpoint=where)
            raise HostKeyChanged(
                f"the instance at {where} presented another SSH host key than the one "
                "pinned on first connect: refused"
            ) from exc
        except asyncssh.PermissionDenied as exc:
            raise InstanceKeyRefused(f"the instance at {where} refused the session's key") from exc
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise InstanceUnreachable(f"could not reach the instance at {where}: {exc}") from exc
        if pinned is None:
            await self._pin(session_id, connection, where)
        log.info("ssh connected", session_id=session_id, endpoint=where, pinned_now=pinned is None)
        return connection

    async def _pin(
        self, session_id: str, connection: asyncssh.SSHClientConnection, where: str
    ) -> None:
        presented = connection.get_server_host_key()
        if presented is None:  # only with GSS key exchange, which is not offered
            connection.close()
            raise InstanceUnreachable(f"the instance at {where} presented no host key")
        host_key = openssh_public(presented)
        try:
            kept = await self._host_keys.pin(session_id, host_key)
        except BaseException:
            connection.close()
            raise
        if kept != host_key:  # another connect pinned first, and saw another key
            connection.close()
            raise HostKeyChanged(f"the instance at {where} presented two different host keys")


async def _without_nagle(connection: asyncssh.SSHClientConnection) -> None:
    """Have the instance's OpenSSH send small packets at once: sshd turns TCP_NODELAY on for a
    connection only when its first session starts (`ssh_packet_set_interactive`), so a
    connection that only forwards ports keeps Nagle's algorithm. Each streamed token then waited
    for our delayed ACK of the one before: ~40 ms added to a chat's first token through the
    tunnel (bench/proxy.py). Running one no-op command first costs a round trip per connect.
    Our side (asyncssh) sets TCP_NODELAY itself. A server that refuses the command is only
    slower."""
    try:
        async with asyncio.timeout(_NO_OP_SECONDS):
            await connection.run("true", stdin=asyncssh.DEVNULL, check=False)
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        log.info("ssh no-op command failed", error=str(exc))


async def _shut(link: _Link) -> None:
    for listener in link.forwards.values():
        listener.close()
    link.connection.close()
    with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
        async with asyncio.timeout(_CLOSE_WAIT_SECONDS):
            await link.connection.wait_closed()
