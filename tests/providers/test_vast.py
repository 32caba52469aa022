"""The Vast.ai plugin and client, for real, against a fake Vast API on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.domain.tiers import TIERS
from sizzle.errors import BadCredentials, NoCapacity, ProviderBadRequest
from sizzle.providers.base import InstanceState, ProviderContext
from sizzle.providers.registry import available_providers
from sizzle.providers.vast.client import VastClient
from sizzle.providers.vast.plugin import VastProvider
from sizzle.settings import Settings
from tests.providers.fakes.server import serve
from tests.providers.fakes.vast import API_KEY, FakeVast, vast_app


@pytest.fixture
def fake() -> FakeVast:
    return FakeVast()


@pytest.fixture
def api_url(fake: FakeVast) -> Iterator[str]:
    with serve(vast_app(fake)) as url:
        yield f"{url}/api/v0"


async def _nap(_seconds: float) -> None:
    return None


@pytest.fixture
async def vast(
    settings: Settings, clock: FakeClock, db: Database, api_url: str
) -> Any:  # an async generator fixture: the provider, closed afterwards
    context = ProviderContext(
        settings=settings.model_copy(update={"vast_api_key": API_KEY, "vast_api_url": api_url}),
        clock=clock,
        db=db,
    )
    client = VastClient(api_key=API_KEY, base_url=api_url, timeout=5, sleep=_nap)
    provider = VastProvider(context, client=client)
    yield provider
    await provider.close()


def _context(settings: Settings, clock: FakeClock, db: Database, **update: Any) -> ProviderContext:
    return ProviderContext(settings=settings.model_copy(update=update), clock=clock, db=db)


def test_vast_is_registered() -> None:
    assert "vast" in available_providers()


async def test_offers_are_filtered_normalized_and_priced(
    vast: VastProvider, fake: FakeVast
) -> None:
    fake.offer(101, "RTX 4090", dph_total=0.3456789)
    fake.offer(102, "RTX 5090", gpu_ram=32607, dph_total=0.1 + 0.2, reliability2=0.97)
    fake.offer(103, "RTX 4090", num_gpus=2)  # starter takes one GPU
    fake.offer(104, "RTX 3090")  # not a GPU Sizzle rents, and not asked for
    fake.offer(105, "A100 SXM4", gpu_ram=81920, dph_total=1.1)  # another tier's GPU

    offers = await vast.offers(TIERS["starter"])

    assert [(o.offer_id, o.gpu_type) for o in offers] == [("102", "RTX 5090"), ("101", "RTX 4090")]
    cheap, dear = offers
    assert cheap.upstream_micros_per_hour == 300_000  # 0.30000000000000004 -> exact micros
    assert dear.upstream_micros_per_hour == 345_679
    assert (dear.provider, dear.gpu_count, dear.vram_gb_per_gpu) == ("vast", 1, 24)
    assert (cheap.vram_gb_per_gpu, cheap.reliability) == (32, 0.97)

    (query,) = fake.bodies("POST", "/bundles/")
    assert query["gpu_name"] == {"in": ["RTX 4090", "RTX 5090"]}
    assert query["num_gpus"] == {"gte": 1, "lte": 1}
    assert query["verified"] == {"eq": True}
    assert query["rentable"] == {"eq": True}
    assert query["rented"] == {"eq": False}
    assert query["reliability2"]["gte"] >= 0.95
    assert query["order"] == [["dph_total", "asc"]]


async def test_a100_size_comes_from_the_reported_memory(vast: VastProvider, fake: FakeVast) -> None:
    fake.offer(201, "A100 SXM4", gpu_ram=81920, dph_total=1.2)
    fake.offer(202, "A100 PCIE", gpu_ram=40960, dph_total=0.9)
    offers = await vast.offers(TIERS["pro"])
    assert {(o.offer_id, o.gpu_type, o.vram_gb_per_gpu) for o in offers} == {
        ("201", "A100 80GB", 80),
        ("202", "A100 40GB", 40),
    }
    (query,) = fake.bodies("POST", "/bundles/")
    assert set(query["gpu_name"]["in"]) >= {"A100 SXM4", "A100 PCIE"}


async def test_the_whole_life_of_an_instance(vast: VastProvider, fake: FakeVast) -> None:
    fake.offer(301, "H100 SXM", gpu_ram=81559, num_gpus=2, dph_total=4.5)
    (offer,) = await vast.offers(TIERS["beast"])
    assert (offer.gpu_type, offer.gpu_count, offer.vram_gb_per_gpu) == ("H100 80GB", 2, 80)

    external_id = await vast.provision(offer, session_id="s123", model="llama3.1:8b")

    (body,) = fake.bodies("PUT", "/asks/301/")
    assert body["label"] == "sizzle-s123"
    assert "ollama" in body["image"]
    assert body["runtype"] == "args"
    assert body["disk"] >= 50
    assert "llama3.1:8b" in body["onstart"]
    seen = [(await vast.status(external_id)).state for _ in range(4)]  # type: ignore[union-attr]
    assert seen == [
        InstanceState.PROVISIONING,  # actual_status null
        InstanceState.PROVISIONING,  # loading
        InstanceState.RUNNING,
        InstanceState.RUNNING,
    ]
    instance = await vast.status(external_id)
    assert instance is not None
    assert instance.name == "sizzle-s123"

    await vast.stop(external_id)
    assert (await vast.status(external_id)).state is InstanceState.STOPPED  # type: ignore[union-attr]
    await vast.start(external_id)
    assert (await vast.status(external_id)).state is InstanceState.RUNNING  # type: ignore[union-attr]
    assert fake.bodies("PUT", f"/instances/{external_id}/") == [
        {"state": "stopped"},
        {"state": "running"},
    ]

    await vast.terminate(external_id)
    assert fake.destroyed == [int(external_id)]
    assert int(external_id) not in fake.instances
    assert await vast.status(external_id) is None
    await vast.terminate(external_id)  # already gone: silent
    assert fake.destroyed == [int(external_id)]


async def test_a_gone_instance_shown_as_null_is_gone(vast: VastProvider, fake: FakeVast) -> None:
    fake.gone_as_null = True
    assert await vast.status("4242") is None
    await vast.terminate("4242")


async def test_a_taken_offer_is_no_capacity(vast: VastProvider, fake: FakeVast) -> None:
    fake.offer(401, "RTX 4090")
    (offer,) = await vast.offers(TIERS["starter"])
    await vast.provision(offer, session_id="first", model=None)
    with pytest.raises(NoCapacity, match="no_such_ask"):
        await vast.provision(offer, session_id="second", model=None)
    assert len(fake.instances) == 1


async def test_a_refusal_that_still_created_an_instance_destroys_it(
    vast: VastProvider, fake: FakeVast
) -> None:
    fake.refuse_rent_with_contract = True
    fake.offer(402, "RTX 4090")
    (offer,) = await vast.offers(TIERS["starter"])
    with pytest.raises(NoCapacity):
        await vast.provision(offer, session_id="s", model=None)
    assert fake.instances == {}
    assert len(fake.destroyed) == 1


async def test_invalid_args_are_a_bad_request(api_url: str, fake: FakeVast) -> None:
    fake.offer(403, "RTX 4090")
    client = VastClient(api_key=API_KEY, base_url=api_url, sleep=_nap)
    try:
        with pytest.raises(ProviderBadRequest, match="Invalid args"):
            await client.rent("403", {"label": "sizzle-x"})
    finally:
        await client.aclose()


async def test_a_wrong_key_is_bad_credentials(
    settings: Settings, clock: FakeClock, db: Database, api_url: str, fake: FakeVast
) -> None:
    provider = VastProvider(
        _context(settings, clock, db, vast_api_key="wrong", vast_api_url=api_url)
    )
    try:
        with pytest.raises(BadCredentials):
            await provider.offers(TIERS["starter"])
        health = await provider.health()
        assert not health.healthy
    finally:
        await provider.close()


async def test_without_a_key_there_are_no_offers_and_it_is_unhealthy(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    provider = VastProvider(_context(settings, clock, db, vast_api_key=""))
    assert await provider.offers(TIERS["starter"]) == []
    health = await provider.health()
    assert not health.healthy
    assert health.detail is not None and "API key" in health.detail


async def test_a_key_built_from_settings_is_healthy(
    settings: Settings, clock: FakeClock, db: Database, api_url: str
) -> None:
    provider = VastProvider(
        _context(settings, clock, db, vast_api_key=API_KEY, vast_api_url=api_url)
    )
    try:
        assert (await provider.health()).healthy
    finally:
        await provider.close()


async def test_plain_text_429s_are_waited_out(vast: VastProvider, fake: FakeVast) -> None:
    fake.offer(501, "RTX 4090")
    fake.throttle = 2
    offers = await vast.offers(TIERS["starter"])
    assert [o.offer_id for o in offers] == ["501"]
    assert fake.throttled == 2
    assert len(fake.bodies("POST", "/bundles/")) == 3

    fake.throttle = 2  # renting is not safe to repeat, but a 429 was never executed
    external_id = await vast.provision(offers[0], session_id="r", model=None)
    assert int(external_id) in fake.instances


async def test_a_dead_container_is_failed_with_its_message(
    vast: VastProvider, fake: FakeVast
) -> None:
    instance_id = fake.add_instance("sizzle-dead", "exited")
    fake.instances[instance_id]["status_msg"] = "Error: container exited with code 1"
    instance = await vast.status(str(instance_id))
    assert instance is not None
    assert instance.state is InstanceState.FAILED
    assert instance.message == "Error: container exited with code 1"

    offline = fake.add_instance("sizzle-off", "offline")
    failed = await vast.status(str(offline))
    assert failed is not None and failed.state is InstanceState.FAILED and failed.message


async def test_foreign_instances_are_not_listed_and_never_destroyed(
    vast: VastProvider, fake: FakeVast
) -> None:
    ours = fake.add_instance("sizzle-mine")
    theirs = fake.add_instance("my-training-run")
    unlabelled = fake.add_instance("")
    fake.instances[unlabelled]["label"] = None

    listed = await vast.list_instances()
    assert [(i.external_id, i.name) for i in listed] == [(str(ours), "sizzle-mine")]

    await vast.terminate(str(theirs))
    await vast.terminate(str(unlabelled))
    assert theirs in fake.instances and unlabelled in fake.instances
    assert fake.bodies("DELETE", f"/instances/{theirs}/") == []
    await vast.terminate(str(ours))
    assert fake.destroyed == [ours]


async def test_the_chat_address_is_the_public_ip_and_the_port_mapped_to_ollama(
    vast: VastProvider, fake: FakeVast
) -> None:
    running = fake.add_instance("sizzle-s1")
    assert await vast.chat_base_url(str(running)) == "http://203.0.113.7:41434"
    loading = fake.add_instance("sizzle-s2", actual_status="loading")
    assert await vast.chat_base_url(str(loading)) is None  # no address until it runs
    unmapped = fake.add_instance("sizzle-s3")
    fake.instances[unmapped]["ports"] = {}
    assert await vast.chat_base_url(str(unmapped)) is None
    assert await vast.chat_base_url("999999") is None  # gone
