"""The ollama provider: the operator's own GPU boxes running Ollama.

Each configured node (`SIZZLE_OLLAMA_NODES`) is one offer while it answers and holds no
session; a session holds its node from provision to terminate (a ProviderInstance row of
provider "ollama" whose external_id is the node name and terminated_at is NULL). The
external id of a session's "instance" is the node name. Provisioning pulls and loads the
session's model; terminating unloads it.

Nodes are probed at once, each bounded by its own short timeout (well under the orchestrator's
offer timeout), so one node that accepts connections and never answers costs a launch that
long and no more. A node that fails its probe is marked unhealthy with the reason, shown in
the provider's health, and left out of the offers without a new probe for a short while.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx
import structlog
from sqlalchemy import select

from sizzle.db.models import GpuSession, ProviderInstance
from sizzle.domain.tiers import Tier, offer_meets_tier
from sizzle.errors import NoCapacity, ProviderUnavailable, SizzleError
from sizzle.providers.base import (
    Boot,
    Instance,
    InstanceState,
    Offer,
    Provider,
    ProviderContext,
    ProviderHealth,
    SupportsChat,
    SupportsMetrics,
    instance_name,
)
from sizzle.providers.http import ProviderHttp, json_body
from sizzle.providers.ollama.client import OllamaClient
from sizzle.providers.ollama.models import OllamaNode, PullProgress, parse_nodes
from sizzle.providers.ollama.reach import NodeReach

log = structlog.get_logger(__name__)

# How long a provisioned node stays claimed in-process while its ProviderInstance row is written.
CLAIM_TTL = timedelta(minutes=5)
# How long offers leave out a node that failed its probe before probing it again (a health
# check, as the operator pages run, probes every node every time).
UNHEALTHY_RECHECK = timedelta(seconds=30)


@dataclass(frozen=True)
class NodeHealth:
    """What the last probe of a node found: None when it answered, else why not."""

    error: str | None
    checked_at: datetime


# Progress phases, in order: "pulling manifest", "downloading" (percent 0-100 over the layers
# seen so far), "verifying", "writing manifest", "pulled", then "loading" and "ready" (100).


class OllamaProvider(Provider, SupportsMetrics, SupportsChat):
    name: ClassVar[str] = "ollama"
    label: ClassVar[str] = "Own GPU nodes (Ollama)"

    def __init__(
        self,
        context: ProviderContext,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(context)
        self.nodes: dict[str, OllamaNode] = {
            node.name: node for node in parse_nodes(context.settings.ollama_nodes)
        }
        self.reach = NodeReach(self.nodes, key_file=context.settings.ollama_ssh_key_file)
        self._transport = transport
        # Nodes this plugin is provisioning, or provisioned before their ProviderInstance row
        # exists (the orchestrator records it after provision returns):
        # node -> (session id, claimed until; None while the provision runs).
        self._claimed: dict[str, tuple[str, datetime | None]] = {}
        self.node_health: dict[str, NodeHealth] = {}

    # -- the interface -------------------------------------------------------------------------

    async def health(self) -> ProviderHealth:
        """Every node probed now; those that fail are named with their reason."""
        if not self.nodes:
            return ProviderHealth(healthy=False, detail="no nodes in SIZZLE_OLLAMA_NODES")
        answers = await asyncio.gather(*(self._probe(node) for node in self.nodes.values()))
        down = [
            f"{node} unhealthy: {error}"
            for node, error in zip(self.nodes, answers, strict=True)
            if error
        ]
        detail = f"{len(self.nodes) - len(down)}/{len(self.nodes)} nodes answer"
        return ProviderHealth(
            healthy=len(down) < len(self.nodes), detail="; ".join([detail, *down])
        )

    async def offers(self, tier: Tier) -> list[Offer]:
        candidates = [
            node
            for node in self.nodes.values()
            if offer_meets_tier(
                tier,
                gpu_type=node.canonical_gpu,
                gpu_count=node.gpu_count,
                vram_gb_per_gpu=node.vram_gb,
            )
        ]
        busy = await self._busy_nodes()
        free = [
            node
            for node in candidates
            if node.name not in busy and not self._recently_unhealthy(node.name)
        ]
        answers = await asyncio.gather(*(self._probe(node) for node in free))
        return [
            Offer(
                provider=self.name,
                offer_id=node.name,
                gpu_type=node.canonical_gpu,
                gpu_count=node.gpu_count,
                vram_gb_per_gpu=node.vram_gb,
                upstream_micros_per_hour=node.upstream_micros_per_hour,
            )
            for node, error in zip(free, answers, strict=True)
            if error is None
        ]

    async def provision(
        self, offer: Offer, *, session_id: str, model: str | None, boot: Boot | None = None
    ) -> str:
        node = self.nodes.get(offer.offer_id)
        if node is None:
            raise NoCapacity(f"ollama has no node {offer.offer_id!r}")
        if node.name in await self._busy_nodes():
            raise NoCapacity(f"ollama node {node.name} is holding another session")
        self._claimed[node.name] = (session_id, None)
        launched = False
        try:
            try:
                client = await self._client(node)
            except ProviderUnavailable as exc:
                raise NoCapacity(str(exc.message)) from exc
            async with client:
                try:
                    await client.version()
                except ProviderUnavailable as exc:
                    raise NoCapacity(f"ollama node {node.name} does not answer: {exc}") from exc
                if model:
                    await self._pull(client, session_id, model)
                    await self._report(session_id, "loading", None)
                    await client.load(model)
                await self._report(session_id, "ready", 100.0)
            launched = True
            self._claimed[node.name] = (session_id, self.context.clock.now() + CLAIM_TTL)
        finally:
            if not launched:  # a launch that failed frees the node; one that worked keeps it
                self._claimed.pop(node.name, None)
        log.info("ollama.provisioned", node=node.name, session=session_id, model=model)
        return node.name

    async def status(self, external_id: str) -> Instance | None:
        node = self.nodes.get(external_id)
        if node is None:
            return None
        async with await self._client(node) as client:
            await client.version()  # ProviderUnavailable when the node does not answer
        return Instance(
            external_id=node.name,
            name=await self._session_name(node.name) or node.name,
            state=InstanceState.RUNNING,
        )

    async def terminate(self, external_id: str) -> None:
        node = self.nodes.get(external_id)
        if node is None:
            return
        self._claimed.pop(node.name, None)
        models: list[str] = []
        session_model = await self._session_model(node.name)
        if session_model:
            models.append(session_model)
        try:
            client = await self._client(node)
        except ProviderUnavailable as exc:
            log.warning("ollama.terminate.unreachable", node=node.name, error=exc.message)
            return
        async with client:
            try:
                models += [loaded.name for loaded in await client.ps() if loaded.name not in models]
            except SizzleError as exc:
                log.warning("ollama.terminate.ps_failed", node=node.name, error=str(exc))
            for model in models:
                try:
                    await client.unload(model)
                except SizzleError as exc:
                    log.warning(
                        "ollama.terminate.unload_failed",
                        node=node.name,
                        model=model,
                        error=str(exc),
                    )

    async def list_instances(self) -> list[Instance]:
        async with self.context.db.transaction() as tx:
            rows = await tx.scalars(
                select(ProviderInstance).where(
                    ProviderInstance.provider == self.name,
                    ProviderInstance.terminated_at.is_(None),
                )
            )
            seen: dict[str, Instance] = {}
            for row in rows:
                if row.external_id in self.nodes and row.external_id not in seen:
                    seen[row.external_id] = Instance(
                        external_id=row.external_id, name=row.name, state=InstanceState.RUNNING
                    )
        return list(seen.values())

    async def close(self) -> None:
        await self.reach.aclose()

    # -- SupportsChat -----------------------------------------------------------------------------

    async def chat_base_url(self, external_id: str) -> str | None:
        node = self.nodes.get(external_id)
        return await self.reach.ollama_url(node) if node else None

    def chat_headers(self, external_id: str) -> dict[str, str]:
        node = self.nodes.get(external_id)
        return node.auth_headers() if node else {}

    # -- SupportsMetrics --------------------------------------------------------------------------

    async def metrics(self, external_id: str) -> dict[str, Any] | None:
        """What the node reports now: loaded models (from /api/ps) and, when the node has an
        `agent_url`, the node agent's GPU readings (on a node reached over SSH without one,
        `nvidia-smi`'s). Absent numbers stay absent (None)."""
        node = self.nodes.get(external_id)
        if node is None:
            return None
        result: dict[str, Any] = {"node": node.name, "models": None, "error": None, "gpus": None}
        try:
            async with await self._client(node) as client:
                result["models"] = [
                    {"name": loaded.name, "size_vram_bytes": loaded.size_vram}
                    for loaded in await client.ps()
                ]
        except SizzleError as exc:
            result["error"] = exc.message
        if node.agent_url:
            result["agent"] = await self._agent_metrics(node)
            result["gpus"] = result["agent"].get("gpus")
        elif node.ssh:
            result["agent"] = await self.reach.gpu_reading(node)
            result["gpus"] = result["agent"]["gpus"]
        return result

    # -- helpers -----------------------------------------------------------------------------

    async def _client(self, node: OllamaNode) -> OllamaClient:
        """A client of the node's Ollama; ProviderUnavailable when its tunnel cannot open."""
        return OllamaClient(
            await self.reach.ollama_url(node),
            node=node.name,
            timeout=self.context.settings.provider_timeout_seconds,
            headers=node.auth_headers(),
            transport=self._transport,
        )

    @property
    def probe_timeout_seconds(self) -> float:
        """One probe's bound: under half the orchestrator's offer timeout, whatever is set."""
        settings = self.context.settings
        return min(settings.ollama_probe_timeout_seconds, settings.provider_timeout_seconds / 2)

    async def _probe(self, node: OllamaNode) -> str | None:
        """None when the node's Ollama answers in time, else why not (one attempt, no retries).

        The outcome is kept in `node_health`."""
        limit = self.probe_timeout_seconds
        error: str | None = None
        client: OllamaClient | None = None
        try:
            async with asyncio.timeout(limit):  # an SSH connection too slow to open
                url = await self.reach.ollama_url(node)
            # built outside the bound: its TLS setup is this process's time, not the node's
            client = OllamaClient(
                url,
                node=node.name,
                timeout=limit,
                headers=node.auth_headers(),
                transport=self._transport,
            )
            # httpx bounds each read, not the whole answer: a node that drips bytes is cut here
            await asyncio.wait_for(client.version(retry=False), limit)
        except TimeoutError:
            error = f"no answer within {limit:g} s"
        except SizzleError as exc:
            error = exc.message
        finally:
            if client is not None:
                await client.aclose()
        if error and self._node_was_healthy(node.name):
            log.warning("ollama.node_unhealthy", node=node.name, error=error)
        self.node_health[node.name] = NodeHealth(error, self.context.clock.now())
        return error

    def _node_was_healthy(self, node: str) -> bool:
        health = self.node_health.get(node)
        return health is None or health.error is None

    def _recently_unhealthy(self, node: str) -> bool:
        """Failed its last probe, and that not long ago: left out without a new probe."""
        health = self.node_health.get(node)
        if health is None or health.error is None:
            return False
        return self.context.clock.now() - health.checked_at < UNHEALTHY_RECHECK

    async def _pull(self, client: OllamaClient, session_id: str, model: str) -> None:
        layers: dict[str, tuple[int, int]] = {}  # digest -> (completed, total)
        last_percent: int | None = None
        async for progress in client.pull(model):
            if progress.digest:
                if progress.total:
                    layers[progress.digest] = (progress.completed or 0, progress.total)
                percent = _percent(layers)
                if percent is not None and (last_percent is None or int(percent) != last_percent):
                    last_percent = int(percent)
                    await self._report(session_id, "downloading", percent)
                continue
            phase = _phase(progress)
            if phase:
                await self._report(session_id, phase, None)

    async def _report(self, session_id: str, phase: str, percent: float | None) -> None:
        try:
            outcome = self.on_progress(session_id, phase, percent)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:  # a broken progress hook must not fail the launch
            log.warning("ollama.progress_hook_failed", session=session_id, error=str(exc))

    async def _busy_nodes(self) -> set[str]:
        """Nodes holding a session: an open ProviderInstance row, or a fresh claim of ours."""
        async with self.context.db.transaction() as tx:
            rows = await tx.scalars(
                select(ProviderInstance.external_id).where(
                    ProviderInstance.provider == self.name,
                    ProviderInstance.terminated_at.is_(None),
                )
            )
            recorded = set(rows)
        now = self.context.clock.now()
        for node, (_session, until) in list(self._claimed.items()):
            if node in recorded or (until is not None and until <= now):
                self._claimed.pop(node, None)
        return recorded | set(self._claimed)

    async def _open_row(self, node: str) -> tuple[str, str | None] | None:
        """(instance name, session model) of the session holding `node`, if any."""
        async with self.context.db.transaction() as tx:
            row = (
                await tx.execute(
                    select(ProviderInstance.name, GpuSession.model)
                    .join(GpuSession, GpuSession.id == ProviderInstance.session_id)
                    .where(
                        ProviderInstance.provider == self.name,
                        ProviderInstance.external_id == node,
                        ProviderInstance.terminated_at.is_(None),
                    )
                    .order_by(ProviderInstance.id.desc())
                    .limit(1)
                )
            ).first()
            return (row[0], row[1]) if row else None

    async def _session_name(self, node: str) -> str | None:
        if node in self._claimed:
            return instance_name(self._claimed[node][0])
        row = await self._open_row(node)
        return row[0] if row else None

    async def _session_model(self, node: str) -> str | None:
        row = await self._open_row(node)
        return row[1] if row else None

    async def _agent_metrics(self, node: OllamaNode) -> dict[str, Any]:
        try:
            agent_url = await self.reach.agent_url(node)
        except SizzleError as exc:
            return {"driver": None, "gpus": None, "error": exc.message}
        http = ProviderHttp(
            provider="sizzle node-agent",
            base_url=str(agent_url),
            headers=node.auth_headers(),
            timeout=self.context.settings.provider_timeout_seconds,
            transport=self._transport,
        )
        try:
            response = await http.request("GET", "metrics", idempotent=False)
            body = json_body(response)
            if response.status_code != 200 or not isinstance(body, dict):
                return {"driver": None, "gpus": None, "error": f"HTTP {response.status_code}"}
            return body
        except SizzleError as exc:
            return {"driver": None, "gpus": None, "error": exc.message}
        finally:
            await http.aclose()


def _percent(layers: dict[str, tuple[int, int]]) -> float | None:
    total = sum(size for _done, size in layers.values())
    if total <= 0:
        return None
    done = sum(min(done, size) for done, size in layers.values())
    return math.floor(done * 10_000 / total) / 100


def _phase(progress: PullProgress) -> str | None:
    status = progress.status.lower()
    if status.startswith("pulling manifest"):
        return "pulling manifest"
    if status.startswith("verifying"):
        return "verifying"
    if status.startswith("writing manifest"):
        return "writing manifest"
    if status == "success":
        return "pulled"
    return None  # "removing any unused layers" and anything new: not worth a report
