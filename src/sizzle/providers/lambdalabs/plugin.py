"""Lambda Cloud: on-demand GPU instances, billed by the hour, with no stop/start.

An instance is a bare Ubuntu VM (login user `ubuntu`, passwordless sudo, its own sshd on port
22). Every launch names Sizzle's own key at Lambda (`account_key`: registered once, never some
other key of the account); once the VM is active with an address, readiness logs in with it and
runs the VM boot script (`workload/boot/vm.sh`), which authorizes the session's key and the
user's, installs Ollama if absent, serves it on loopback only and pulls the model
(SupportsSshBoot). From then on the VM is reached with the session's key, as Vast and RunPod are.

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

import asyncssh
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
    SupportsSshBoot,
    instance_name,
)
from sizzle.providers.lambdalabs.account_key import AccountKey, account_key
from sizzle.providers.lambdalabs.client import LambdaClient, LambdaGone
from sizzle.providers.lambdalabs.models import InstanceTypeEntry, LambdaInstance
from sizzle.workload.endpoint import SshEndpoint

log = structlog.get_logger(__name__)

LAUNCH_INTERVAL_SECONDS = 10.0
SSH_USER = "ubuntu"  # the login user of Lambda's on-demand images, with passwordless sudo
SSH_PORT = 22
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


class LambdaProvider(Provider, SupportsSshBoot):
    name = "lambda"
    label = "Lambda Cloud"
    boot_script = "vm.sh"

    def __init__(
        self,
        context: ProviderContext,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        ssh_port: int = SSH_PORT,
        ssh_user: str = SSH_USER,
    ) -> None:
        """`ssh_port`, `ssh_user`: where the VMs' sshd listens and as whom Sizzle logs in
        (22 and `ubuntu` at Lambda; a test's sshd has its own)."""
        super().__init__(context)
        settings = context.settings
        self._sleep = sleep
        self._ssh_port = ssh_port
        self._ssh_user = ssh_user
        self._account: AccountKey | None = None
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
        self._key_name: str | None = None  # Sizzle's key's name at Lambda, once known

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
        # `boot` is not sent: Lambda takes no boot script. Readiness gives it to the VM over SSH
        # once it is up (SupportsSshBoot); the launch names the key that lets it log in.
        client = self.client
        ssh_key = await self._registered_key_name()
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

    async def ssh_endpoint(self, external_id: str) -> SshEndpoint | None:
        """The VM's sshd, as `ubuntu`: once Lambda reports it active with an address."""
        try:
            instance = await self.client.instance(external_id)
        except LambdaGone:
            return None
        if instance.status != "active" or not instance.ip:
            return None
        return SshEndpoint(host=instance.ip, port=self._ssh_port, username=self._ssh_user)

    def boot_key(self) -> asyncssh.SSHKey:
        return self.account.private_key

    @property
    def account(self) -> AccountKey:
        """Sizzle's key pair at Lambda, derived from the secret key."""
        if self._account is None:
            self._account = account_key(self.context.settings.resolved_secret_key)
        return self._account

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

    async def _registered_key_name(self) -> str:
        """The name of Sizzle's key at Lambda, registered first if the account lacks it."""
        if self._key_name is None:
            self._key_name = await self._register()
        return self._key_name

    async def _register(self) -> str:
        account = self.account
        listed = await self.client.ssh_keys()
        ours = [key.name for key in listed if account.is_registered_as(key.public_key)]
        if ours:
            return ours[0]
        if any(key.name == account.name for key in listed):
            raise ProviderBadRequest(
                f"lambda: an SSH key named {account.name} is registered with another public "
                "key: delete it at Lambda, and Sizzle registers its own again"
            )
        try:
            added = await self.client.add_ssh_key(account.name, account.public_key)
        except ProviderBadRequest:
            # another process registered it at the same moment: fine, if it is ours
            listed = await self.client.ssh_keys()
            ours = [key.name for key in listed if account.is_registered_as(key.public_key)]
            if not ours:
                raise
            return ours[0]
        log.info("lambda.ssh_key_registered", name=added.name)
        return added.name


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
