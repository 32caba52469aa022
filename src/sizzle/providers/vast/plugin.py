"""The Vast.ai plugin: marketplace offers for a tier, instances running Ollama.

Sizzle's instances are labelled `sizzle-<session id>`; the plugin lists only those and never
destroys an instance with another label, so a shared Vast account is safe.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import structlog

from sizzle.domain.gpus import GPU_VRAM_GB, normalize_gpu_name
from sizzle.domain.money import quoted_usd_to_micros
from sizzle.domain.tiers import Tier, offer_meets_tier
from sizzle.errors import BadRequest, ProviderUnavailable
from sizzle.providers.base import (
    INSTANCE_PREFIX,
    Boot,
    Instance,
    InstanceState,
    Offer,
    Provider,
    ProviderContext,
    ProviderHealth,
    SupportsChat,
    SupportsPause,
    instance_name,
)
from sizzle.providers.vast.client import VastClient
from sizzle.providers.vast.models import VastInstance, VastOffer

log = structlog.get_logger(__name__)

# Canonical GPU (sizzle.domain.gpus) -> the names Vast's search API uses for it.
VAST_GPU_NAMES: dict[str, tuple[str, ...]] = {
    "RTX 4090": ("RTX 4090",),
    "RTX 5090": ("RTX 5090",),
    "RTX A6000": ("RTX A6000",),
    "L40S": ("L40S",),
    "A100 40GB": ("A100 PCIE", "A100 SXM4"),
    "A100 80GB": ("A100 PCIE", "A100 SXM4", "A100 SXM"),
    "H100 80GB": ("H100 SXM", "H100 PCIE", "H100 NVL"),
    "H200": ("H200", "H200 NVL"),
    "B200": ("B200",),
    "B300": ("B300",),
}

OLLAMA_IMAGE = "ollama/ollama:latest"
OLLAMA_PORT = 11434
MIN_RELIABILITY = 0.95
SEARCH_LIMIT = 64
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")

_STATES: dict[str, InstanceState] = {
    "running": InstanceState.RUNNING,
    "stopped": InstanceState.STOPPED,
    "frozen": InstanceState.STOPPED,
    "exited": InstanceState.FAILED,  # the container died
    "unknown": InstanceState.FAILED,  # no heartbeat from the host
    "offline": InstanceState.FAILED,  # the host disconnected
}


class VastProvider(Provider, SupportsPause, SupportsChat):
    name = "vast"
    label = "Vast.ai"

    def __init__(self, context: ProviderContext, *, client: VastClient | None = None) -> None:
        super().__init__(context)
        self._client = client

    @property
    def configured(self) -> bool:
        return self._client is not None or bool(self.context.settings.vast_api_key)

    def client(self) -> VastClient:
        if self._client is None:
            settings = self.context.settings
            if not settings.vast_api_key:
                raise ProviderUnavailable("vast: no API key (set SIZZLE_VAST_API_KEY)")
            self._client = VastClient(
                api_key=settings.vast_api_key,
                base_url=settings.vast_api_url,
                timeout=settings.provider_timeout_seconds,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def health(self) -> ProviderHealth:
        if not self.configured:
            return ProviderHealth(healthy=False, detail="no API key: set SIZZLE_VAST_API_KEY")
        try:
            await self.client().list_instances()
        except ProviderUnavailable as exc:
            return ProviderHealth(healthy=False, detail=exc.message)
        return ProviderHealth(healthy=True)

    async def offers(self, tier: Tier) -> list[Offer]:
        if not self.configured:
            return []
        found = await self.client().search_offers(search_query(tier))
        offers = [offer for raw in found if (offer := to_offer(raw, tier)) is not None]
        return sorted(offers, key=lambda o: o.upstream_micros_per_hour)

    async def provision(
        self, offer: Offer, *, session_id: str, model: str | None, boot: Boot | None = None
    ) -> str:
        body = create_body(
            label=instance_name(session_id),
            model=model,
            disk_gb=disk_gb(offer.gpu_count * offer.vram_gb_per_gpu),
        )
        instance_id = await self.client().rent(offer.offer_id, body)
        log.info("vast.provisioned", session_id=session_id, instance_id=instance_id)
        return str(instance_id)

    async def status(self, external_id: str) -> Instance | None:
        found = await self.client().show(external_id)
        return None if found is None else to_instance(found)

    async def chat_base_url(self, external_id: str) -> str | None:
        """Ollama on the instance's public address and the host port Vast mapped 11434 to."""
        found = await self.client().show(external_id)
        if found is None or (found.actual_status or "").lower() != "running":
            return None
        address = (found.public_ipaddr or "").strip()  # Vast may pad it with whitespace
        port = found.host_port(OLLAMA_PORT)
        if not address or port is None:
            return None
        return f"http://{address}:{port}"

    async def stop(self, external_id: str) -> None:
        await self.client().set_state(external_id, "stopped")

    async def start(self, external_id: str) -> None:
        await self.client().set_state(external_id, "running")

    async def terminate(self, external_id: str) -> None:
        client = self.client()
        found = await client.show(external_id)
        if found is None:
            return
        if not (found.label or "").startswith(INSTANCE_PREFIX):
            log.warning("vast.refused_foreign_destroy", instance_id=external_id, label=found.label)
            return
        await client.destroy(external_id)

    async def list_instances(self) -> list[Instance]:
        return [
            to_instance(found)
            for found in await self.client().list_instances()
            if (found.label or "").startswith(INSTANCE_PREFIX)
        ]


def vast_gpu_names(tier: Tier) -> list[str]:
    names: list[str] = []
    for gpu in tier.gpu_types:
        names.extend(n for n in VAST_GPU_NAMES.get(gpu, ()) if n not in names)
    return names


def disk_gb(total_vram_gb: int) -> int:
    """Disk for the image and the model weights: about the VRAM plus room, 50 to 2000 GB."""
    return min(max(total_vram_gb + 30, 50), 2000)


def search_query(tier: Tier) -> dict[str, Any]:
    """The `POST bundles/` body: the tier's GPUs, on-demand, verified, reliable, cheapest first."""
    return {
        "gpu_name": {"in": vast_gpu_names(tier)},
        "num_gpus": {"gte": tier.min_gpus, "lte": tier.max_gpus},
        "verified": {"eq": True},
        "rentable": {"eq": True},
        "rented": {"eq": False},
        "reliability2": {"gte": MIN_RELIABILITY},
        "direct_port_count": {"gte": 1},
        "type": "ondemand",
        "allocated_storage": disk_gb(tier.min_vram_gb),
        "order": [["dph_total", "asc"]],
        "limit": SEARCH_LIMIT,
    }


def to_offer(raw: VastOffer, tier: Tier) -> Offer | None:
    """A Sizzle offer, or None for a GPU Sizzle does not rent or one outside the tier."""
    if raw.dph_total is None or raw.dph_total < 0 or raw.num_gpus < 1:
        return None
    reported_gb = raw.gpu_ram / 1024 if raw.gpu_ram else None
    gpu_type = normalize_gpu_name(raw.gpu_name, vram_gb=reported_gb)
    if gpu_type is None:
        return None
    vram = round(reported_gb) if reported_gb else GPU_VRAM_GB[gpu_type]
    if not offer_meets_tier(tier, gpu_type=gpu_type, gpu_count=raw.num_gpus, vram_gb_per_gpu=vram):
        return None
    reliability = raw.reliability2 if raw.reliability2 is not None else raw.reliability
    return Offer(
        provider=VastProvider.name,
        offer_id=str(raw.id),
        gpu_type=gpu_type,
        gpu_count=raw.num_gpus,
        vram_gb_per_gpu=vram,
        upstream_micros_per_hour=quoted_usd_to_micros(raw.dph_total),
        reliability=1.0 if reliability is None else max(0.0, min(reliability, 1.0)),
    )


def create_body(*, label: str, model: str | None, disk_gb: int) -> dict[str, Any]:
    """The `PUT asks/{id}/` body: Ollama serving on a direct port, pulling `model` at start."""
    env: dict[str, str] = {
        f"-p {OLLAMA_PORT}:{OLLAMA_PORT}": "1",
        f"-e OLLAMA_HOST=0.0.0.0:{OLLAMA_PORT}": "1",
        "-e OLLAMA_KEEP_ALIVE=-1": "1",
    }
    body: dict[str, Any] = {
        "client_id": "me",
        "image": OLLAMA_IMAGE,
        "disk": disk_gb,
        "label": label,
        "runtype": "args",
        "args": ["serve"],
        "target_state": "running",
        "cancel_unavail": True,
    }
    if model:
        if not _MODEL_NAME.match(model):
            raise BadRequest(f"not a model name: {model!r}")
        env[f"-e SIZZLE_MODEL={model}"] = "1"
        quoted = shlex.quote(model)
        body["onstart"] = (
            f"until ollama list >/dev/null 2>&1; do sleep 1; done; ollama pull {quoted}"
        )
    body["env"] = env
    return body


def to_instance(found: VastInstance) -> Instance:
    status = (found.actual_status or "").lower()
    message = found.status_msg.strip() if found.status_msg else None
    state = _STATES.get(status, InstanceState.PROVISIONING)  # null, loading, created, ...
    if status == "created" and message and "oci runtime create failed" in message.lower():
        state = InstanceState.FAILED  # the container could not start and never will
    if state is InstanceState.FAILED and not message:
        message = f"vast instance is {status}"
    return Instance(
        external_id=str(found.id),
        name=found.label or "",
        state=state,
        message=message,
    )
