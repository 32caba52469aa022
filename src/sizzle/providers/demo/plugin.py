"""The demo provider: simulated GPUs for trying Sizzle with no account anywhere.

Its instances live in the database, so a server restart finds them as a real provider's
would. They cost nothing upstream, and they report no GPU metrics: there is no GPU to read.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select

from sizzle.db.models import DemoInstance
from sizzle.domain.gpus import GPU_VRAM_GB
from sizzle.domain.tiers import TIERS, Tier
from sizzle.errors import NoCapacity
from sizzle.providers.base import (
    INSTANCE_PREFIX,
    Boot,
    Instance,
    InstanceState,
    Offer,
    Provider,
    ProviderHealth,
    SupportsPause,
    instance_name,
)

_LIVE = ("provisioning", "running", "stopped")


class DemoProvider(Provider, SupportsPause):
    name = "demo"
    label = "Demo (simulated GPUs, no real hardware)"

    async def health(self) -> ProviderHealth:
        return ProviderHealth(healthy=True, detail="simulated")

    async def offers(self, tier: Tier) -> list[Offer]:
        if await self._in_use(tier.name) >= self.context.settings.demo_capacity:
            return []
        gpu_type = tier.gpu_types[0]
        return [
            Offer(
                provider=self.name,
                offer_id=f"demo-{tier.name}",
                gpu_type=gpu_type,
                gpu_count=tier.min_gpus,
                vram_gb_per_gpu=GPU_VRAM_GB[gpu_type],
                upstream_micros_per_hour=0,
            )
        ]

    async def provision(
        self, offer: Offer, *, session_id: str, model: str | None, boot: Boot | None = None
    ) -> str:
        tier = offer.offer_id.removeprefix("demo-")
        if tier not in TIERS:
            raise NoCapacity(f"demo has no offer {offer.offer_id}")
        now = self.context.clock.now()
        async with self.context.db.transaction() as tx:
            if await self._in_use(tier, tx) >= self.context.settings.demo_capacity:
                raise NoCapacity(f"all demo {tier} GPUs are in use")
            instance = DemoInstance(
                id=uuid.uuid4().hex,
                name=instance_name(session_id),
                tier=tier,
                gpu_type=offer.gpu_type,
                gpu_count=offer.gpu_count,
                state="provisioning",
                created_at=now,
                ready_at=now + timedelta(seconds=self.context.settings.demo_provision_seconds),
            )
            tx.add(instance)
        return instance.id

    async def status(self, external_id: str) -> Instance | None:
        async with self.context.db.transaction() as tx:
            row = await tx.get(DemoInstance, external_id)
            if row is None or row.state == "terminated":
                return None
            if row.state == "provisioning" and self.context.clock.now() >= row.ready_at:
                row.state = "running"
            return _as_instance(row)

    async def stop(self, external_id: str) -> None:
        await self._set_state(external_id, "stopped")

    async def start(self, external_id: str) -> None:
        await self._set_state(external_id, "running")

    async def terminate(self, external_id: str) -> None:
        async with self.context.db.transaction() as tx:
            row = await tx.get(DemoInstance, external_id)
            if row is not None and row.name.startswith(INSTANCE_PREFIX):
                row.state = "terminated"
                row.terminated_at = row.terminated_at or self.context.clock.now()

    async def list_instances(self) -> list[Instance]:
        async with self.context.db.transaction() as tx:
            rows = await tx.scalars(select(DemoInstance).where(DemoInstance.state.in_(_LIVE)))
            return [_as_instance(row) for row in rows]

    async def _set_state(self, external_id: str, state: str) -> None:
        async with self.context.db.transaction() as tx:
            row = await tx.get(DemoInstance, external_id)
            if row is not None and row.state in _LIVE:
                row.state = state

    async def _in_use(self, tier: str, tx: object | None = None) -> int:
        query = select(func.count()).where(DemoInstance.tier == tier, DemoInstance.state.in_(_LIVE))
        if tx is not None:
            return int(await tx.scalar(query) or 0)  # type: ignore[attr-defined]
        async with self.context.db.transaction() as own:
            return int(await own.scalar(query) or 0)


def _as_instance(row: DemoInstance) -> Instance:
    state = {
        "provisioning": InstanceState.PROVISIONING,
        "running": InstanceState.RUNNING,
        "stopped": InstanceState.STOPPED,
    }[row.state]
    return Instance(external_id=row.id, name=row.name, state=state)
