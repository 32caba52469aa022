"""Lambda Cloud: on-demand GPU instances, billed by the hour, with no stop/start.

Lambda has no way to pause an instance (only restart and terminate), so this plugin does not
implement SupportsPause.

Launch rate limit: Lambda accepts one launch per 10 s. The plugin remembers when it last sent
a launch (by the injected clock) and waits out the rest of the window through its injectable
`sleep` before the next one, serialized by a lock; a 429 that still comes (another process
on the same account) is waited out by ProviderHttp.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import datetime

import httpx
import structlog

from sizzle.domain.gpus import GPU_VRAM_GB, normalize_gpu_name
from sizzle.domain.tiers import Tier, offer_meets_tier
from sizzle.errors import BadCredentials, NoCapacity, ProviderBadRequest, ProviderUnavailable
from sizzle.providers.base import (
    INSTANCE_PREFIX,
    Boot,
    Instance,
    InstanceState,
    Offer,
    Provider,
    ProviderContext,
    ProviderHealth,
    instance_name,
)
from sizzle.providers.lambdalabs.client import LambdaClient, LambdaGone
from sizzle.providers.lambdalabs.models import InstanceTypeEntry, LambdaInstance

log = structlog.get_logger(__name__)

LAUNCH_INTERVAL_SECONDS = 10.0
SSH_KEY_NAME = "sizzle"
_DESCRIPTION = re.compile(r"^(\d+)x (?:Tesla )?(.+?) \((\d+) GB")
_TYPE_NAME = re.compile(r"^gpu_(\d+)x_(.+)$")
_STATES = {
    "booting": InstanceState.PROVISIONING,
    "active": InstanceState.RUNNING,
    "unhealthy": InstanceState.FAILED,
}
_GONE_STATES = {"terminated"}
_NO_KEY = "no Lambda API key: set SIZZLE_LAMBDA_API_KEY"


def parse_gpus(entry: InstanceTypeEntry) -> tuple[str, int, int] | None:
    """(canonical GPU name, GPU count, GB per GPU) of an instance type, or None if not rentable."""
    info = entry.instance_type
    gb: int | None = None
    match = _DESCRIPTION.match(info.description)
    if match:
        count, raw, gb = int(match[1]), match[2], int(match[3])
    else:
        by_name = _TYPE_NAME.match(info.name)
        if not by_name:
            return None
        count, raw = int(by_name[1]), by_name[2]
    gpu = normalize_gpu_name(raw, vram_gb=gb)
    if gpu is None or count < 1:
        return None
    return gpu, count, gb if gb is not None else GPU_VRAM_GB[gpu]


class LambdaProvider(Provider):
    name = "lambda"
    label = "Lambda Cloud"
    # A bare VM: nothing installs or starts a model server on it yet, so it takes GPU-only
    # sessions (the user's own SSH work) and no session with a model.
    cannot_serve_models = "Lambda instances start no model server yet"

    def __init__(
        self,
        context: ProviderContext,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(context)
        settings = context.settings
        self._sleep = sleep
        self._client: LambdaClient | None = None
        if settings.lambda_api_key:
            self._client = LambdaClient(
                api_key=settings.lambda_api_key,
                base_url=settings.lambda_api_url,
                timeout=settings.provider_timeout_seconds,
                transport=transport,
                sleep=sleep,
            )
        self._launch_lock = asyncio.Lock()
        self._last_launch: datetime | None = None
        self._ssh_key: str | None = None

    @property
    def client(self) -> LambdaClient:
        if self._client is None:
            raise BadCredentials(_NO_KEY)
        return self._client

    async def health(self) -> ProviderHealth:
        if self._client is None:
            return ProviderHealth(healthy=False, detail=_NO_KEY)
        try:
            types = await self._client.instance_types()
        except BadCredentials as exc:
            return ProviderHealth(healthy=False, detail=exc.message)
        except ProviderUnavailable as exc:
            return ProviderHealth(healthy=False, detail=exc.message)
        available = sum(1 for entry in types.values() if entry.regions_with_capacity_available)
        return ProviderHealth(
            healthy=True, detail=f"{available} of {len(types)} instance types available"
        )

    async def offers(self, tier: Tier) -> list[Offer]:
        if self._client is None:
            return []
        offers = []
        for type_name, entry in sorted((await self._client.instance_types()).items()):
            regions = entry.regions_with_capacity_available
            parsed = parse_gpus(entry)
            if not regions or parsed is None:
                continue
            gpu, count, gb = parsed
            if not offer_meets_tier(tier, gpu_type=gpu, gpu_count=count, vram_gb_per_gpu=gb):
                continue
            offers.append(
                Offer(
                    provider=self.name,
                    offer_id=f"{entry.instance_type.name or type_name}|{regions[0].name}",
                    gpu_type=gpu,
                    gpu_count=count,
                    vram_gb_per_gpu=gb,
                    upstream_micros_per_hour=entry.instance_type.price_cents_per_hour * 10_000,
                )
            )
        return offers

    async def provision(
        self, offer: Offer, *, session_id: str, model: str | None, boot: Boot | None = None
    ) -> str:
        type_name, sep, region = offer.offer_id.partition("|")
        if not sep or not type_name or not region:
            raise ProviderBadRequest(f"lambda: malformed offer id {offer.offer_id!r}")
        client = self.client
        ssh_key = await self._ssh_key_name()
        name = instance_name(session_id)
        async with self._launch_lock:
            await self._wait_for_launch_window()
            self._last_launch = self.context.clock.now()
            ids = await client.launch(
                region=region, instance_type=type_name, ssh_key=ssh_key, name=name
            )
        if not ids:
            raise NoCapacity(f"lambda launched no {type_name} in {region}")
        log.info("lambda.launched", session_id=session_id, instance_id=ids[0], offer=offer.offer_id)
        return ids[0]

    async def status(self, external_id: str) -> Instance | None:
        try:
            instance = await self.client.instance(external_id)
        except LambdaGone:
            return None
        if instance.status in _GONE_STATES:
            return None
        return _as_instance(instance)

    async def terminate(self, external_id: str) -> None:
        client = self.client
        try:
            instance = await client.instance(external_id)
        except LambdaGone:
            return
        if instance.status in _GONE_STATES:
            return
        if not (instance.name or "").startswith(INSTANCE_PREFIX):
            log.warning("lambda.terminate_refused", instance_id=external_id, name=instance.name)
            return
        try:
            await client.terminate([external_id])
        except LambdaGone:
            return

    async def list_instances(self) -> list[Instance]:
        if self._client is None:
            return []
        return [
            _as_instance(instance)
            for instance in await self._client.instances()
            if (instance.name or "").startswith(INSTANCE_PREFIX)
            and instance.status not in _GONE_STATES
        ]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _wait_for_launch_window(self) -> None:
        if self._last_launch is None:
            return
        elapsed = (self.context.clock.now() - self._last_launch).total_seconds()
        if elapsed < LAUNCH_INTERVAL_SECONDS:
            await self._sleep(LAUNCH_INTERVAL_SECONDS - elapsed)

    async def _ssh_key_name(self) -> str:
        """Lambda requires exactly one SSH key per launch: the account's first, or ours."""
        if self._ssh_key is None:
            keys = await self.client.ssh_keys()
            if keys:
                self._ssh_key = keys[0].name
            else:
                self._ssh_key = (await self.client.create_ssh_key(SSH_KEY_NAME)).name
        return self._ssh_key


def _as_instance(instance: LambdaInstance) -> Instance:
    state = _STATES.get(instance.status)
    message = None if state else f"unknown Lambda status {instance.status!r}"
    if instance.status == "unhealthy":
        message = "Lambda reports the instance unhealthy"
    return Instance(
        external_id=instance.id,
        name=instance.name or "",
        state=state or InstanceState.PROVISIONING,
        message=message,
    )
