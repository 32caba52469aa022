"""How Sizzle reaches each operator node: at its URL on the network, or through an SSH tunnel.

A node with `ssh` in `SIZZLE_OLLAMA_NODES` keeps its Ollama (and node agent) on its own
127.0.0.1, open to nothing on the network. Sizzle logs in with the operator's key
(`SIZZLE_OLLAMA_SSH_KEY_FILE`), accepts only the host key the operator configured for that node,
and forwards a local port to each; everything the plugin asks the node (probes, pulls, chat,
metrics) then goes to the local end. The connection is pooled, kept alive and opened again when
it drops (`sizzle.workload.tunnel`); where it cannot be opened, the node does not answer, as a
node on the network would not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncssh

from sizzle.errors import BadRequest, ProviderUnavailable, SizzleError
from sizzle.providers.ollama.models import OllamaNode
from sizzle.workload.gpu import GPU_QUERY, UnreadableGpuQuery, parse_gpu_query
from sizzle.workload.tunnel import Tunnels

_LINK = "ollama-node:"  # the tunnels' pool key of a node's connection
GPU_QUERY_TIMEOUT_SECONDS = 10


class ConfiguredHostKeys:
    """The host key of each SSH-reached node, as the operator configured it: nothing is pinned
    on first connect (the operator knows their own machines), so any other key is refused."""

    def __init__(self, nodes: dict[str, OllamaNode]) -> None:
        self._keys = {
            _LINK + name: node.ssh_host_key for name, node in nodes.items() if node.ssh_host_key
        }

    async def pinned(self, session_id: str) -> str | None:
        return self._keys[session_id]

    async def pin(self, session_id: str, host_key: str) -> str:
        raise AssertionError("every SSH-reached node has its host key configured")


def read_node_key(path: Path | None, nodes: dict[str, OllamaNode]) -> asyncssh.SSHKey | None:
    """The operator's private key for the SSH-reached nodes; BadRequest (at startup) when a
    node needs one and it is missing or unreadable."""
    needing = sorted(name for name, node in nodes.items() if node.ssh)
    if not needing:
        return None
    if path is None:
        raise BadRequest(
            f"SIZZLE_OLLAMA_NODES reaches {', '.join(needing)} over SSH: set "
            "SIZZLE_OLLAMA_SSH_KEY_FILE to the private key those nodes authorize"
        )
    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not an unencrypted private key"
        raise BadRequest(f"SIZZLE_OLLAMA_SSH_KEY_FILE {path}: {reason}") from None


class NodeReach:
    """The base URLs to use for each node's Ollama and agent, and commands over SSH."""

    def __init__(self, nodes: dict[str, OllamaNode], *, key_file: Path | None) -> None:
        self._nodes = nodes
        self._key = read_node_key(key_file, nodes)
        self.tunnels = Tunnels(ConfiguredHostKeys(nodes))

    async def ollama_url(self, node: OllamaNode) -> str:
        """Where to send the node's Ollama requests; ProviderUnavailable (this node only) when
        its tunnel cannot be opened."""
        if node.ssh is None:
            assert node.url is not None  # noqa: S101 - checked by the node's validator
            return node.url.rstrip("/")
        return await self._forward(node, node.ollama_port)

    async def agent_url(self, node: OllamaNode) -> str | None:
        """Where to send the node agent's requests, if the node has an agent."""
        if node.ssh is None or node.agent_port is None:
            return node.agent_url
        return await self._forward(node, node.agent_port)

    async def gpu_reading(self, node: OllamaNode) -> dict[str, Any]:
        """An SSH-reached node's GPUs as its driver reads them there (`nvidia-smi`), for a node
        without an agent: `{"gpus": [...] or None, "error": why not or None}`."""
        endpoint, key = node.ssh_endpoint, self._key
        assert endpoint is not None and key is not None  # noqa: S101 - checked at startup
        try:
            printed = await self.tunnels.run(
                _LINK + node.name, endpoint, key, GPU_QUERY, timeout=GPU_QUERY_TIMEOUT_SECONDS
            )
            return {"gpus": parse_gpu_query(printed), "error": None}
        except SizzleError as exc:
            return {"gpus": None, "error": exc.message}
        except UnreadableGpuQuery as exc:
            return {"gpus": None, "error": str(exc)}

    async def aclose(self) -> None:
        await self.tunnels.aclose()

    async def _forward(self, node: OllamaNode, remote_port: int) -> str:
        endpoint, key = node.ssh_endpoint, self._key
        assert endpoint is not None and key is not None  # noqa: S101 - checked at startup
        link = _LINK + node.name
        opened = self.tunnels.open_url(link, endpoint, remote_port)
        if opened is not None:
            return opened
        try:
            return await self.tunnels.local_url(link, endpoint, key, remote_port)
        except SizzleError as exc:
            raise ProviderUnavailable(f"ollama node {node.name}: {exc.message}") from exc
