"""The demo provider: capacity, provisioning delay, and instances that outlive a restart."""

from __future__ import annotations

import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.domain.tiers import TIERS
from sizzle.errors import NoCapacity
from sizzle.providers.base import InstanceState, ProviderContext
from sizzle.providers.demo.plugin import DemoProvider
from sizzle.settings import Settings


def demo(settings: Settings, clock: FakeClock, db: Database, **overrides: object) -> DemoProvider:
    return DemoProvider(
        ProviderContext(settings=settings.model_copy(update=overrides), clock=clock, db=db)
    )


async def test_offers_match_the_tier(settings: Settings, clock: FakeClock, db: Database) -> None:
    (offer,) = await demo(settings, clock, db).offers(TIERS["pro"])
    assert offer.provider == "demo"
    assert offer.gpu_type in TIERS["pro"].gpu_types
    assert offer.upstream_micros_per_hour == 0


async def test_instance_runs_after_the_provisioning_delay(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    provider = demo(settings, clock, db, demo_provision_seconds=5)
    (offer,) = await provider.offers(TIERS["starter"])
    external_id = await provider.provision(offer, session_id="abc", model=None)
    assert (await provider.status(external_id)).state is InstanceState.PROVISIONING
    clock.advance(5)
    instance = await provider.status(external_id)
    assert instance.state is InstanceState.RUNNING
    assert instance.name == "sizzle-abc"


async def test_instances_outlive_a_restart(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    (offer,) = await demo(settings, clock, db).offers(TIERS["starter"])
    external_id = await demo(settings, clock, db).provision(offer, session_id="s1", model=None)
    restarted = demo(settings, clock, Database(db.url))
    try:
        assert [i.external_id for i in await restarted.list_instances()] == [external_id]
    finally:
        await restarted.context.db.dispose()


async def test_capacity_per_tier_is_enforced(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    provider = demo(settings, clock, db, demo_capacity=1)
    (offer,) = await provider.offers(TIERS["starter"])
    await provider.provision(offer, session_id="first", model=None)
    assert await provider.offers(TIERS["starter"]) == []
    assert await provider.offers(TIERS["pro"]) != []
    with pytest.raises(NoCapacity):
        await provider.provision(offer, session_id="second", model=None)


async def test_terminate_frees_capacity_and_is_silent_when_gone(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    provider = demo(settings, clock, db, demo_capacity=1)
    (offer,) = await provider.offers(TIERS["starter"])
    external_id = await provider.provision(offer, session_id="x", model=None)
    await provider.terminate(external_id)
    await provider.terminate(external_id)
    await provider.terminate("no-such-instance")
    assert await provider.status(external_id) is None
    assert len(await provider.offers(TIERS["starter"])) == 1


async def test_pause_and_resume(settings: Settings, clock: FakeClock, db: Database) -> None:
    provider = demo(settings, clock, db, demo_provision_seconds=0)
    (offer,) = await provider.offers(TIERS["starter"])
    external_id = await provider.provision(offer, session_id="p", model=None)
    await provider.stop(external_id)
    assert (await provider.status(external_id)).state is InstanceState.STOPPED
    await provider.start(external_id)
    assert (await provider.status(external_id)).state is InstanceState.RUNNING
