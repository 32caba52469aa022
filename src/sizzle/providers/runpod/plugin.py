"""The RunPod plugin: on-demand pods running Ollama, rented through the GraphQL API."""

from __future__ import annotations

from decimal import Decimal

import structlog

from sizzle.domain.gpus import GPU_VRAM_GB, normalize_gpu_name
from sizzle.domain.money import quoted_usd_to_micros
from sizzle.domain.tiers import Tier, offer_meets_tier
from sizzle.errors import BadCredentials, ProviderBadRequest
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
from sizzle.providers.runpod.client import Enum, PodNotFound, RunPodClient, literal
from sizzle.providers.runpod.models import GpuType, LowestPrice, Pod

log = structlog.get_logger(__name__)

IMAGE = "ollama/ollama:latest"
OLLAMA_PORT = 11434
OLLAMA_PORTS = f"{OLLAMA_PORT}/http"
CONTAINER_DISK_GB = 50
_POD_FIELDS = (
    "id name desiredStatus gpuCount "
    "runtime { uptimeInSeconds ports { ip isIpPublic privatePort publicPort type } }"
)
_PENDING = {"CREATED", "RESTARTING"}
_STOPPED = {"EXITED", "PAUSED"}


class RunPodProvider(Provider, SupportsPause, SupportsChat):
    name = "runpod"
    label = "RunPod"

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(context)
        settings = context.settings
        self._has_key = bool(settings.runpod_api_key)
        self._client = RunPodClient(
            api_key=settings.runpod_api_key,
            api_url=settings.runpod_api_url,
            timeout=settings.provider_timeout_seconds,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def health(self) -> ProviderHealth:
        if not self._has_key:
            return ProviderHealth(healthy=False, detail="no API key: set SIZZLE_RUNPOD_API_KEY")
        try:
            await self._client.graphql("query Myself { myself { id } }")
        except Exception as exc:  # health reports; it never raises
            return ProviderHealth(healthy=False, detail=str(exc) or type(exc).__name__)
        return ProviderHealth(healthy=True)

    async def offers(self, tier: Tier) -> list[Offer]:
        if not self._has_key:
            return []
        counts = range(tier.min_gpus, tier.max_gpus + 1)
        prices = " ".join(
            f"c{count}: lowestPrice(input: {{gpuCount: {count}}}) "
            "{ uninterruptablePrice stockStatus }"
            for count in counts
        )
        query = (
            "query GpuTypes { gpuTypes { id displayName memoryInGb maxGpuCount "
            f"securePrice communityPrice {prices} }} }}"
        )
        data = await self._client.graphql(query)
        offers: list[Offer] = []
        for raw in data.get("gpuTypes") or []:
            gpu = GpuType.model_validate(raw)
            canonical = normalize_gpu_name(gpu.id, vram_gb=gpu.memory_in_gb) or normalize_gpu_name(
                gpu.display_name or "", vram_gb=gpu.memory_in_gb
            )
            if canonical is None or canonical not in tier.gpu_types:
                continue
            vram = int(gpu.memory_in_gb) if gpu.memory_in_gb else GPU_VRAM_GB[canonical]
            for count in counts:
                if gpu.max_gpu_count is not None and count > gpu.max_gpu_count:
                    continue
                if not offer_meets_tier(
                    tier, gpu_type=canonical, gpu_count=count, vram_gb_per_gpu=vram
                ):
                    continue
                per_gpu = _price_per_gpu(gpu, raw.get(f"c{count}"))
                if per_gpu is None:
                    continue
                offers.append(
                    Offer(
                        provider=self.name,
                        offer_id=f"{gpu.id}|{count}",
                        gpu_type=canonical,
                        gpu_count=count,
                        vram_gb_per_gpu=vram,
                        upstream_micros_per_hour=quoted_usd_to_micros(per_gpu * count),
                    )
                )
        return offers

    async def provision(
        self, offer: Offer, *, session_id: str, model: str | None, boot: Boot | None = None
    ) -> str:
        gpu_type_id, count = _parse_offer_id(offer.offer_id)
        fields: dict[str, object] = {
            "name": instance_name(session_id),
            "imageName": IMAGE,
            "gpuTypeId": gpu_type_id,
            "gpuCount": count,
            "cloudType": Enum("ALL"),
            "containerDiskInGb": CONTAINER_DISK_GB,
            "volumeInGb": 0,
            "ports": OLLAMA_PORTS,
        }
        if model:
            fields["env"] = [{"key": "SIZZLE_MODEL", "value": model}]
        mutation = (
            f"mutation {{ podFindAndDeployOnDemand(input: {literal(fields)}) "
            "{ id imageName machineId } }"
        )
        self._need_key()
        data = await self._client.graphql(mutation, idempotent=False)
        pod = data.get("podFindAndDeployOnDemand")
        if not isinstance(pod, dict) or not pod.get("id"):
            raise ProviderBadRequest("runpod: podFindAndDeployOnDemand returned no pod")
        pod_id = str(pod["id"])
        log.info("runpod.provisioned", session_id=session_id, pod_id=pod_id, offer=offer.offer_id)
        return pod_id

    async def status(self, external_id: str) -> Instance | None:
        pod = await self._pod(external_id)
        return _as_instance(pod) if pod is not None else None

    async def chat_base_url(self, external_id: str) -> str | None:
        """RunPod's HTTP proxy for the pod's Ollama port, once the pod's container is up."""
        pod = await self._pod(external_id)
        if pod is None or pod.runtime is None:
            return None
        return f"https://{pod.id}-{OLLAMA_PORT}.proxy.runpod.net"

    async def stop(self, external_id: str) -> None:
        pod = await self._own_pod(external_id, "stop")
        if pod is None:
            return
        await self._client.graphql(
            f"mutation {{ podStop(input: {{podId: {literal(pod.id)}}}) {{ id desiredStatus }} }}",
            idempotent=False,
        )

    async def start(self, external_id: str) -> None:
        pod = await self._own_pod(external_id, "start")
        if pod is None:
            raise ProviderBadRequest(f"runpod: pod {external_id} is gone; it cannot be started")
        fields = {"podId": pod.id, "gpuCount": pod.gpu_count or 1}
        await self._client.graphql(
            f"mutation {{ podResume(input: {literal(fields)}) {{ id desiredStatus }} }}",
            idempotent=False,
        )

    async def terminate(self, external_id: str) -> None:
        pod = await self._own_pod(external_id, "terminate")
        if pod is None:
            return
        try:
            await self._client.graphql(
                f"mutation {{ podTerminate(input: {{podId: {literal(pod.id)}}}) }}",
                idempotent=False,
            )
        except PodNotFound:
            return
        log.info("runpod.terminated", pod_id=pod.id, name=pod.name)

    async def list_instances(self) -> list[Instance]:
        self._need_key()
        data = await self._client.graphql(f"query Pods {{ myself {{ pods {{ {_POD_FIELDS} }} }} }}")
        myself = data.get("myself") or {}
        pods = [Pod.model_validate(raw) for raw in myself.get("pods") or []]
        ours = (_as_instance(pod) for pod in pods if (pod.name or "").startswith(INSTANCE_PREFIX))
        return [instance for instance in ours if instance is not None]

    async def _pod(self, pod_id: str) -> Pod | None:
        self._need_key()
        data = await self._client.graphql(
            f"query Pod {{ pod(input: {{podId: {literal(pod_id)}}}) {{ {_POD_FIELDS} }} }}"
        )
        raw = data.get("pod")
        return Pod.model_validate(raw) if raw else None

    async def _own_pod(self, pod_id: str, action: str) -> Pod | None:
        """The pod if it exists and is one of ours; None (and nothing done) otherwise."""
        pod = await self._pod(pod_id)
        if pod is None:
            return None
        if not (pod.name or "").startswith(INSTANCE_PREFIX):
            log.warning("runpod.foreign_pod_refused", pod_id=pod_id, name=pod.name, action=action)
            return None
        return pod

    def _need_key(self) -> None:
        if not self._has_key:
            raise BadCredentials("runpod: no API key (SIZZLE_RUNPOD_API_KEY)")


def _price_per_gpu(gpu: GpuType, raw_lowest: object) -> Decimal | None:
    """$/h per GPU for on-demand use, or None when the type is out of stock or unpriced."""
    if not isinstance(raw_lowest, dict):
        return None
    lowest = LowestPrice.model_validate(raw_lowest)
    if lowest.stock_status is None:
        return None
    for price in (lowest.uninterruptable_price, gpu.secure_price, gpu.community_price):
        if price:
            return Decimal(str(price))
    return None


def _parse_offer_id(offer_id: str) -> tuple[str, int]:
    gpu_type_id, _, count = offer_id.rpartition("|")
    if not gpu_type_id or not count.isdigit():
        raise ProviderBadRequest(f"runpod: malformed offer id {offer_id!r}")
    return gpu_type_id, int(count)


def _as_instance(pod: Pod) -> Instance | None:
    status = pod.desired_status or ""
    name = pod.name or ""
    if status == "TERMINATED":
        return None
    if status == "RUNNING":
        state = InstanceState.RUNNING if pod.runtime is not None else InstanceState.PROVISIONING
        return Instance(external_id=pod.id, name=name, state=state)
    if status in _PENDING:
        return Instance(external_id=pod.id, name=name, state=InstanceState.PROVISIONING)
    if status in _STOPPED:
        return Instance(external_id=pod.id, name=name, state=InstanceState.STOPPED)
    if status == "DEAD":
        return Instance(external_id=pod.id, name=name, state=InstanceState.FAILED, message="DEAD")
    return Instance(
        external_id=pod.id,
        name=name,
        state=InstanceState.PROVISIONING,
        message=f"unknown desiredStatus {status!r}",
    )
