"""The Vast.ai plugin: marketplace offers for a tier, instances that boot Sizzle's workload.

An instance runs the `ollama/ollama` image with Sizzle's boot script (`sizzle.workload.boot`,
"instance.sh") as its whole job: Vast's `args` runtype uses `onstart` as the container's
entrypoint and `args` as its argv, so the rent sends `/bin/sh` and `["-c", <script>]`. Only
the SSH port is mapped; Ollama listens on the instance's loopback and is reached through SSH
(`ssh_endpoint`), never published.

Sizzle's instances are labelled `sizzle-<session id>`; the plugin lists only those and never
destroys an instance with another label, so a shared Vast account is safe.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from sizzle.domain.gpus import GPU_VRAM_GB, normalize_gpu_name
from sizzle.domain.money import quoted_usd_to_micros
from sizzle.domain.tiers import Tier, offer_meets_tier
from sizzle.domain.vram import tier_vram_gb
from sizzle.errors import BadRequest, ProviderBadRequest, ProviderUnavailable
from sizzle.providers.base import (
    INSTANCE_PREFIX,
    Boot,
    Instance,
    InstanceState,
    Offer,
    Provider,
    ProviderContext,
    ProviderHealth,
    SupportsPause,
    SupportsSsh,
    instance_name,
)
from sizzle.providers.vast.client import VastClient
from sizzle.providers.vast.models import VastInstance, VastOffer
from sizzle.workload.boot import boot_script
from sizzle.workload.disk import instance_disk_gb
from sizzle.workload.endpoint import SshEndpoint

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

OLLAMA_IMAGE = "ollama/ollama:latest"  # Ubuntu based: the boot script installs sshd with apt
BOOT_SCRIPT = "instance.sh"
SSH_PORT = 22
SSH_USER = "root"  # the container runs as root; the boot script authorizes our key for it
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


class VastProvider(Provider, SupportsPause, SupportsSsh):
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
        ask_id, disk = parse_offer_id(offer.offer_id)
        body = create_body(label=instance_name(session_id), boot=boot, model=model, disk=disk)
        instance_id = await self.client().rent(ask_id, body)
        log.info("vast.provisioned", session_id=session_id, instance_id=instance_id)
        return str(instance_id)

    async def status(self, external_id: str) -> Instance | None:
        found = await self.client().show(external_id)
        return None if found is None else to_instance(found)

    async def ssh_endpoint(self, external_id: str) -> SshEndpoint | None:
        """The instance's sshd: its public address and the host port Vast mapped container
        port 22 to, as root; None until it runs with that port mapped, or once gone."""
        found = await self.client().show(external_id)
        if found is None or (found.actual_status or "").lower() != "running":
            return None
        address = (found.public_ipaddr or "").strip()  # Vast may pad it with whitespace
        port = found.host_port(SSH_PORT)
        if not address or port is None:
            return None
        return SshEndpoint(host=address, port=port, username=SSH_USER)

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


def disk_gb(tier: Tier) -> int:
    """The disk rented with every instance of a tier, in GB: room for the largest model the
    tier can serve (`instance_disk_gb`). The search prices exactly this size and the rent asks
    for exactly this size."""
    return instance_disk_gb(tier_vram_gb(tier))


def offer_id(ask_id: int, disk: int) -> str:
    """A Vast offer as Sizzle names it: the ask and the disk its price was quoted for."""
    return f"{ask_id}|{disk}"


def parse_offer_id(value: str) -> tuple[str, int]:
    """The ask id and the disk (GB) of an offer named by `offer_id`."""
    ask, _, disk = value.partition("|")
    if not ask.isdigit() or not disk.isdigit():
        raise ProviderBadRequest(f"not a Vast offer id: {value!r}")
    return ask, int(disk)


def search_query(tier: Tier) -> dict[str, Any]:
    """The `POST bundles/` body: the tier's GPUs, on-demand, verified, reliable, with a free
    direct port for SSH and room for the tier's disk, priced with that disk, cheapest first."""
    disk = disk_gb(tier)
    return {
        "gpu_name": {"in": vast_gpu_names(tier)},
        "num_gpus": {"gte": tier.min_gpus, "lte": tier.max_gpus},
        "verified": {"eq": True},
        "rentable": {"eq": True},
        "rented": {"eq": False},
        "reliability2": {"gte": MIN_RELIABILITY},
        "direct_port_count": {"gte": 1},
        "disk_space": {"gte": disk},
        "type": "ondemand",
        "allocated_storage": disk,
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
        offer_id=offer_id(raw.id, disk_gb(tier)),
        gpu_type=gpu_type,
        gpu_count=raw.num_gpus,
        vram_gb_per_gpu=vram,
        upstream_micros_per_hour=quoted_usd_to_micros(raw.dph_total),
        reliability=1.0 if reliability is None else max(0.0, min(reliability, 1.0)),
    )


def create_body(*, label: str, boot: Boot | None, model: str | None, disk: int) -> dict[str, Any]:
    """The `PUT asks/{id}/` body: the boot script as the container's whole job.

    With `runtype: "args"` Vast runs `onstart` as the entrypoint with `args` as its argv, so
    the script goes to `/bin/sh -c`. Its settings travel in `env`, in Vast's dict form (a name
    and its value; a `-p host:container` key maps a port). Only SSH is mapped: the model
    server stays on the instance's loopback.
    """
    env: dict[str, str] = {
        f"-p {SSH_PORT}:{SSH_PORT}": "1",
        "SIZZLE_SSH_PORT": str(SSH_PORT),
        "OLLAMA_KEEP_ALIVE": "-1",  # the session pays for the GPU: keep the model loaded
    }
    if boot is not None:
        env["SIZZLE_SSH_PUBLIC_KEY"] = boot.ssh_public_key
        if boot.user_ssh_keys:
            env["SIZZLE_USER_SSH_KEYS"] = "\n".join(boot.user_ssh_keys)
    # Without `boot` no key is sent: the script refuses to start, the container exits and the
    # instance shows as failed (`to_instance`), so the launch moves on rather than renting a
    # GPU nobody can reach.
    wanted = (boot.model if boot is not None else None) or model
    if wanted:
        if not _MODEL_NAME.match(wanted):
            raise BadRequest(f"not a model name: {wanted!r}")
        env["SIZZLE_MODEL"] = wanted
    return {
        "client_id": "me",
        "image": OLLAMA_IMAGE,
        "disk": disk,
        "label": label,
        "runtype": "args",
        "onstart": "/bin/sh",
        "args": ["-c", boot_script(BOOT_SCRIPT)],
        "env": env,
        "target_state": "running",
        "cancel_unavail": True,
    }


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
