"""The RunPod plugin: on-demand pods that boot Sizzle's workload, through RunPod's REST API.

A pod runs the `ollama/ollama` image with Sizzle's boot script (`sizzle.workload.boot`,
"instance.sh") as its whole job. The image's ENTRYPOINT is `/bin/ollama`, so the create
overrides the entrypoint itself (`dockerEntrypoint`), not only the start command: the
container's argv is `/bin/sh -c <script>`. Only SSH (22/tcp) is exposed; Ollama listens on the
pod's loopback and is reached through SSH (`ssh_endpoint`), never through RunPod's proxy.

Stopping a pod wipes its container disk, and RunPod may resume it without a GPU: `start`
refuses such a pod (it is stopped again and NoCapacity raised), so a session is never billed
for a dead GPU; on a good start the boot script runs again and pulls the model again.

Sizzle's pods are named `sizzle-<session id>`; the plugin lists only those and never stops or
deletes a pod with another name, so a shared RunPod account is safe.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import structlog

from sizzle.domain.gpus import GPU_VRAM_GB, normalize_gpu_name
from sizzle.domain.money import quoted_usd_to_micros
from sizzle.domain.tiers import Tier, offer_meets_tier
from sizzle.errors import NoCapacity, ProviderBadRequest, ProviderUnavailable
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
from sizzle.providers.runpod.client import RunPodClient
from sizzle.providers.runpod.models import GpuType, LowestPrice, Pod
from sizzle.workload.boot import boot_script
from sizzle.workload.disk import instance_disk_gb
from sizzle.workload.endpoint import SshEndpoint

log = structlog.get_logger(__name__)

IMAGE = "ollama/ollama:latest"  # Ubuntu based: the boot script installs sshd with apt
BOOT_SCRIPT = "instance.sh"
SSH_PORT = 22
SSH_USER = "root"  # the container runs as root; the boot script authorizes our key for it
CLOUD_TYPE = "SECURE"  # REST takes SECURE or COMMUNITY; priced below with securePrice first
_PENDING = {"CREATED", "RESTARTING"}
_STOPPED = {"EXITED", "PAUSED"}


class RunPodProvider(Provider, SupportsPause, SupportsSsh):
    name = "runpod"
    label = "RunPod"

    def __init__(self, context: ProviderContext, *, client: RunPodClient | None = None) -> None:
        super().__init__(context)
        self._client = client

    @property
    def configured(self) -> bool:
        return self._client is not None or bool(self.context.settings.runpod_api_key)

    def client(self) -> RunPodClient:
        if self._client is None:
            settings = self.context.settings
            if not settings.runpod_api_key:
                raise ProviderUnavailable("runpod: no API key (set SIZZLE_RUNPOD_API_KEY)")
            self._client = RunPodClient(
                api_key=settings.runpod_api_key,
                rest_url=settings.runpod_rest_url,
                graphql_url=settings.runpod_api_url,
                timeout=settings.provider_timeout_seconds,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def health(self) -> ProviderHealth:
        if not self.configured:
            return ProviderHealth(healthy=False, detail="no API key: set SIZZLE_RUNPOD_API_KEY")
        try:
            await self.client().list_pods()
        except ProviderUnavailable as exc:
            return ProviderHealth(healthy=False, detail=exc.message)
        return ProviderHealth(healthy=True)

    async def offers(self, tier: Tier) -> list[Offer]:
        if not self.configured:
            return []
        counts = range(tier.min_gpus, tier.max_gpus + 1)
        data = await self.client().graphql(gpu_types_query(counts))
        offers: list[Offer] = []
        for raw in data.get("gpuTypes") or []:
            offers.extend(to_offers(raw, tier, counts))
        return offers

    async def provision(
        self, offer: Offer, *, session_id: str, model: str | None, boot: Boot | None = None
    ) -> str:
        gpu_type_id, count = parse_offer_id(offer.offer_id)
        body = create_body(
            name=instance_name(session_id),
            gpu_type_id=gpu_type_id,
            gpu_count=count,
            disk=container_disk_gb(offer),
            boot=boot,
            model=model,
        )
        pod = await self.client().create_pod(body)
        log.info("runpod.provisioned", session_id=session_id, pod_id=pod.id, offer=offer.offer_id)
        return pod.id

    async def status(self, external_id: str) -> Instance | None:
        pod = await self.client().get_pod(external_id)
        return None if pod is None else to_instance(pod)

    async def ssh_endpoint(self, external_id: str) -> SshEndpoint | None:
        """The pod's sshd: its public IP and the public port RunPod mapped 22 to, as root;
        None until the pod runs with both, or once it is gone."""
        pod = await self.client().get_pod(external_id)
        return None if pod is None else endpoint_of(pod)

    async def stop(self, external_id: str) -> None:
        pod = await self._own_pod(external_id, "stop")
        if pod is not None:
            await self.client().stop_pod(pod.id)

    async def start(self, external_id: str) -> None:
        """Start the pod again; NoCapacity (and the pod stopped again) where RunPod brings it
        back without a GPU, so the session stays paused and unbilled."""
        pod = await self._own_pod(external_id, "start")
        if pod is None:
            raise ProviderBadRequest(f"runpod: pod {external_id} is gone; it cannot be started")
        client = self.client()
        started = await client.start_pod(pod.id) or await client.get_pod(pod.id)
        if started is not None and started.gpu_count == 0:
            log.warning("runpod.resumed_without_gpu", pod_id=pod.id)
            await client.stop_pod(pod.id)
            raise NoCapacity(f"runpod: pod {pod.id} came back without a GPU; it was stopped")

    async def terminate(self, external_id: str) -> None:
        pod = await self._own_pod(external_id, "terminate")
        if pod is None:
            return
        await self.client().delete_pod(pod.id)
        log.info("runpod.terminated", pod_id=pod.id, name=pod.name)

    async def list_instances(self) -> list[Instance]:
        pods = await self.client().list_pods()
        ours = (to_instance(pod) for pod in pods if (pod.name or "").startswith(INSTANCE_PREFIX))
        return [instance for instance in ours if instance is not None]

    async def _own_pod(self, pod_id: str, action: str) -> Pod | None:
        """The pod if it exists and is one of ours; None (and nothing done) otherwise."""
        pod = await self.client().get_pod(pod_id)
        if pod is None:
            return None
        if not (pod.name or "").startswith(INSTANCE_PREFIX):
            log.warning("runpod.foreign_pod_refused", pod_id=pod_id, name=pod.name, action=action)
            return None
        return pod


def gpu_types_query(counts: range) -> str:
    """The GraphQL query for every GPU type with its on-demand price and stock per count
    (REST publishes no prices). Stock is asked for Secure Cloud, where pods are created."""
    prices = " ".join(
        f"c{count}: lowestPrice(input: {{gpuCount: {count}, secureCloud: true}}) "
        "{ uninterruptablePrice stockStatus }"
        for count in counts
    )
    return (
        "query GpuTypes { gpuTypes { id displayName memoryInGb maxGpuCount "
        f"securePrice communityPrice {prices} }} }}"
    )


def to_offers(raw: dict[str, Any], tier: Tier, counts: range) -> list[Offer]:
    """The offers one GPU type makes for a tier: one per GPU count in stock and priced."""
    gpu = GpuType.model_validate(raw)
    canonical = normalize_gpu_name(gpu.id, vram_gb=gpu.memory_in_gb) or normalize_gpu_name(
        gpu.display_name or "", vram_gb=gpu.memory_in_gb
    )
    if canonical is None or canonical not in tier.gpu_types:
        return []
    vram = int(gpu.memory_in_gb) if gpu.memory_in_gb else GPU_VRAM_GB[canonical]
    offers: list[Offer] = []
    for count in counts:
        if gpu.max_gpu_count is not None and count > gpu.max_gpu_count:
            continue
        if not offer_meets_tier(tier, gpu_type=canonical, gpu_count=count, vram_gb_per_gpu=vram):
            continue
        per_gpu = _price_per_gpu(gpu, raw.get(f"c{count}"))
        if per_gpu is None:
            continue
        offers.append(
            Offer(
                provider=RunPodProvider.name,
                offer_id=f"{gpu.id}|{count}",
                gpu_type=canonical,
                gpu_count=count,
                vram_gb_per_gpu=vram,
                upstream_micros_per_hour=quoted_usd_to_micros(per_gpu * count),
            )
        )
    return offers


def container_disk_gb(offer: Offer) -> int:
    """The container disk, in GB: room for the largest model the offer's GPUs can hold."""
    return instance_disk_gb(offer.gpu_count * offer.vram_gb_per_gpu)


def create_body(
    *,
    name: str,
    gpu_type_id: str,
    gpu_count: int,
    disk: int,
    boot: Boot | None,
    model: str | None,
) -> dict[str, Any]:
    """The `POST /pods` body: the boot script as the container's whole argv.

    `dockerEntrypoint` replaces the image's ENTRYPOINT and `dockerStartCmd` its CMD, so the
    container runs `/bin/sh -c <script> sizzle-boot` (the last word is the script's `$0`).
    Settings travel in `env`, an object of strings. Only SSH is exposed. Without `boot` no key
    is sent: the script refuses to start and the pod never answers on SSH, so the launch
    times out and moves on rather than serving a GPU nobody can reach.
    """
    env: dict[str, str] = {
        "SIZZLE_SSH_PORT": str(SSH_PORT),
        "OLLAMA_KEEP_ALIVE": "-1",  # the session pays for the GPU: keep the model loaded
    }
    if boot is not None:
        env["SIZZLE_SSH_PUBLIC_KEY"] = boot.ssh_public_key
        if boot.user_ssh_keys:
            env["SIZZLE_USER_SSH_KEYS"] = "\n".join(boot.user_ssh_keys)
    wanted = (boot.model if boot is not None else None) or model
    if wanted:
        env["SIZZLE_MODEL"] = wanted  # the boot script refuses anything but a model tag
    return {
        "name": name,
        "imageName": IMAGE,
        "computeType": "GPU",
        "gpuTypeIds": [gpu_type_id],
        "gpuCount": gpu_count,
        "cloudType": CLOUD_TYPE,
        "containerDiskInGb": disk,
        "volumeInGb": 0,
        "ports": [f"{SSH_PORT}/tcp"],
        "supportPublicIp": True,
        "interruptible": False,
        "dockerEntrypoint": ["/bin/sh", "-c", boot_script(BOOT_SCRIPT)],
        "dockerStartCmd": ["sizzle-boot"],
        "env": env,
    }


def endpoint_of(pod: Pod) -> SshEndpoint | None:
    """Where the pod's sshd answers, once it runs with a public IP and port 22 mapped."""
    if (pod.desired_status or "") != "RUNNING":
        return None
    address = (pod.public_ip or "").strip()
    port = pod.public_port(SSH_PORT)
    if not address or port is None:
        return None
    return SshEndpoint(host=address, port=port, username=SSH_USER)


def _price_per_gpu(gpu: GpuType, raw_lowest: object) -> Decimal | None:
    """$/h per GPU on Secure Cloud on demand, or None when out of stock or unpriced."""
    if not isinstance(raw_lowest, dict):
        return None
    lowest = LowestPrice.model_validate(raw_lowest)
    if lowest.stock_status is None:
        return None
    for price in (gpu.secure_price, lowest.uninterruptable_price):
        if price:
            return Decimal(str(price))
    return None


def parse_offer_id(offer_id: str) -> tuple[str, int]:
    gpu_type_id, _, count = offer_id.rpartition("|")
    if not gpu_type_id or not count.isdigit():
        raise ProviderBadRequest(f"runpod: malformed offer id {offer_id!r}")
    return gpu_type_id, int(count)


def to_instance(pod: Pod) -> Instance | None:
    status = pod.desired_status or ""
    name = pod.name or ""
    if status == "TERMINATED":
        return None
    if status == "RUNNING" and pod.gpu_count == 0:
        message = "the pod runs without a GPU"
        return Instance(pod.id, name, InstanceState.FAILED, message=message)
    if status == "RUNNING":
        up = endpoint_of(pod) is not None
        return Instance(pod.id, name, InstanceState.RUNNING if up else InstanceState.PROVISIONING)
    if status in _STOPPED:
        return Instance(pod.id, name, InstanceState.STOPPED)
    if status == "DEAD":
        return Instance(pod.id, name, InstanceState.FAILED, message="DEAD")
    unknown = None if status in _PENDING else f"unknown desiredStatus {status!r}"
    return Instance(pod.id, name, InstanceState.PROVISIONING, message=unknown)
