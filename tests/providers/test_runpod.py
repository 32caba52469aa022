"""The RunPod plugin and client against a fake RunPod GraphQL API on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.domain.tiers import TIERS
from sizzle.errors import BadCredentials, NoCapacity, ProviderBadRequest
from sizzle.providers.base import InstanceState, Offer, ProviderContext
from sizzle.providers.registry import available_providers
from sizzle.providers.runpod.plugin import RunPodProvider
from sizzle.settings import Settings
from tests.providers.fakes.runpod import FakeGpuType, FakeRunPod, build_app
from tests.providers.fakes.server import serve


def _catalog() -> list[FakeGpuType]:
    return [
        FakeGpuType("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.69, {1: "High"}),
        FakeGpuType("NVIDIA GeForce RTX 5090", "RTX 5090", 32, None, {1: "High"}),  # no price
        FakeGpuType("NVIDIA GeForce RTX 3090", "RTX 3090", 24, 0.22, {1: "High"}),  # not rented
        FakeGpuType("NVIDIA A100 80GB PCIe", "A100 80GB", 80, 1.64, {1: None}),  # out of stock
        FakeGpuType("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, 1.19, {1: "Medium"}),
        FakeGpuType("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.69, {1: "High", 3: "Low", 8: None}),
    ]


@pytest.fixture
def fake() -> FakeRunPod:
    return FakeRunPod(gpu_types=_catalog(), runtime_null_polls=2)


@pytest.fixture
def url(fake: FakeRunPod) -> Iterator[str]:
    with serve(build_app(fake)) as base_url:
        yield base_url


def _runpod(
    settings: Settings, clock: FakeClock, db: Database, url: str, key: str = "rp-test-key"
) -> RunPodProvider:
    overrides = {"runpod_api_key": key, "runpod_api_url": url, "provider_timeout_seconds": 5}
    return RunPodProvider(
        ProviderContext(settings=settings.model_copy(update=overrides), clock=clock, db=db)
    )


@pytest.fixture
async def runpod(
    settings: Settings, clock: FakeClock, db: Database, url: str
) -> AsyncIterator[RunPodProvider]:
    provider = _runpod(settings, clock, db, url)
    yield provider
    await provider.close()


def _by_id(offers: list[Offer]) -> dict[str, int]:
    return {offer.offer_id: offer.upstream_micros_per_hour for offer in offers}


def test_the_plugin_is_registered() -> None:
    assert "runpod" in available_providers()


async def test_offers_per_tier_price_per_gpu_times_count_exactly(runpod: RunPodProvider) -> None:
    (starter,) = await runpod.offers(TIERS["starter"])
    assert starter.provider == "runpod"
    assert (starter.offer_id, starter.gpu_type, starter.gpu_count) == (
        "NVIDIA GeForce RTX 4090|1",
        "RTX 4090",
        1,
    )
    assert starter.vram_gb_per_gpu == 24
    assert starter.upstream_micros_per_hour == 690_000

    # the out-of-stock A100 80GB PCIe is skipped; the SXM4 one is normalized to A100 80GB
    (pro,) = await runpod.offers(TIERS["pro"])
    assert (pro.offer_id, pro.gpu_type, pro.upstream_micros_per_hour) == (
        "NVIDIA A100-SXM4-80GB|1",
        "A100 80GB",
        1_190_000,
    )

    # 2.69 $/h per GPU x 3 is 8.07 exactly (a float product would be 8.069999...)
    beast = await runpod.offers(TIERS["beast"])
    assert _by_id(beast) == {
        "NVIDIA H100 80GB HBM3|1": 2_690_000,
        "NVIDIA H100 80GB HBM3|3": 8_070_000,
    }
    assert {offer.gpu_type for offer in beast} == {"H100 80GB"}
    assert await runpod.offers(TIERS["ultra"]) == []


async def test_without_a_key_offers_are_empty_and_health_says_why(
    settings: Settings, clock: FakeClock, db: Database, url: str, fake: FakeRunPod
) -> None:
    provider = _runpod(settings, clock, db, url, key="")
    try:
        assert await provider.offers(TIERS["starter"]) == []
        health = await provider.health()
        assert not health.healthy
        assert health.detail and "SIZZLE_RUNPOD_API_KEY" in health.detail
        with pytest.raises(BadCredentials):
            await provider.list_instances()
    finally:
        await provider.close()
    assert fake.calls == []


async def test_health_with_a_good_key(runpod: RunPodProvider) -> None:
    assert (await runpod.health()).healthy


async def test_the_whole_pod_lifecycle(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    (offer,) = await runpod.offers(TIERS["starter"])
    pod_id = await runpod.provision(offer, session_id="s1", model="llama3.1:8b")

    pod = fake.pods[pod_id]
    assert pod.name == "sizzle-s1"
    assert (pod.gpu_type_id, pod.gpu_count) == ("NVIDIA GeForce RTX 4090", 1)
    assert pod.image.startswith("ollama/ollama")
    assert pod.ports == "11434/http"
    assert pod.env == {"SIZZLE_MODEL": "llama3.1:8b"}

    for _ in range(fake.runtime_null_polls):  # runtime is null while the container starts
        instance = await runpod.status(pod_id)
        assert instance is not None and instance.state is InstanceState.PROVISIONING
    instance = await runpod.status(pod_id)
    assert instance is not None
    assert (instance.state, instance.name, instance.external_id) == (
        InstanceState.RUNNING,
        "sizzle-s1",
        pod_id,
    )

    await runpod.stop(pod_id)
    assert fake.pods[pod_id].desired_status == "EXITED"
    instance = await runpod.status(pod_id)
    assert instance is not None and instance.state is InstanceState.STOPPED

    fake.runtime_null_polls = 1
    await runpod.start(pod_id)
    instance = await runpod.status(pod_id)
    assert instance is not None and instance.state is InstanceState.PROVISIONING
    instance = await runpod.status(pod_id)
    assert instance is not None and instance.state is InstanceState.RUNNING

    await runpod.terminate(pod_id)
    assert pod_id not in fake.pods and fake.terminated == [pod_id]
    assert await runpod.status(pod_id) is None
    await runpod.terminate(pod_id)  # already gone: silent
    assert fake.calls.count("podTerminate") == 1


async def test_no_model_means_no_env(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    (offer,) = await runpod.offers(TIERS["starter"])
    pod_id = await runpod.provision(offer, session_id='q"uote', model=None)
    assert fake.pods[pod_id].env == {}
    assert fake.pods[pod_id].name == 'sizzle-q"uote'  # escaped, not injected


async def test_capacity_errors_are_no_capacity(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    (offer,) = await runpod.offers(TIERS["starter"])
    pod_id = await runpod.provision(offer, session_id="s1", model=None)
    await runpod.stop(pod_id)

    fake.no_capacity = True
    with pytest.raises(NoCapacity, match="no longer any instances available"):
        await runpod.provision(offer, session_id="s2", model=None)
    with pytest.raises(NoCapacity):
        await runpod.start(pod_id)
    assert [pod.name for pod in fake.pods.values()] == ["sizzle-s1"]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("Something went wrong. Please try again later or contact support.", ProviderBadRequest),
        ("Unauthorized request, please check your API key.", BadCredentials),
        (
            'Field "gpuTypes" argument "input" of type "GpuTypeFilter" is invalid',
            ProviderBadRequest,
        ),
    ],
)
async def test_http_200_graphql_errors_are_mapped(
    runpod: RunPodProvider, fake: FakeRunPod, message: str, error: type[Exception]
) -> None:
    fake.fail_with = [message]
    with pytest.raises(error) as raised:
        await runpod.offers(TIERS["starter"])
    assert type(raised.value) is error
    assert fake.calls == ["error"]  # a refused query is not repeated


async def test_a_bad_key_is_bad_credentials(
    settings: Settings, clock: FakeClock, db: Database, url: str
) -> None:
    provider = _runpod(settings, clock, db, url, key="wrong")
    try:
        with pytest.raises(BadCredentials):
            await provider.offers(TIERS["starter"])
        health = await provider.health()
        assert not health.healthy
    finally:
        await provider.close()


async def test_429s_are_waited_out(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    fake.rate_limit = 2
    (offer,) = await runpod.offers(TIERS["starter"])
    fake.rate_limit = 2  # a mutation too: a 429 was refused, never executed
    pod_id = await runpod.provision(offer, session_id="s1", model=None)
    assert list(fake.pods) == [pod_id]
    assert fake.rate_limit == 0


async def test_list_instances_holds_only_ours(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    fake.add_pod("my-training-job")
    stopped = fake.add_pod("sizzle-old", status="EXITED")
    (offer,) = await runpod.offers(TIERS["starter"])
    new = await runpod.provision(offer, session_id="s1", model=None)

    instances = {i.external_id: i for i in await runpod.list_instances()}
    assert set(instances) == {stopped.id, new}
    assert instances[stopped.id].state is InstanceState.STOPPED
    assert instances[new].name == "sizzle-s1"


async def test_a_foreign_pod_is_never_touched(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    foreign = fake.add_pod("my-training-job")
    await runpod.terminate(foreign.id)
    await runpod.stop(foreign.id)
    assert foreign.id in fake.pods and foreign.desired_status == "RUNNING"
    assert "podTerminate" not in fake.calls and "podStop" not in fake.calls


async def test_a_pod_gone_between_lookup_and_terminate_is_silent(
    runpod: RunPodProvider, fake: FakeRunPod
) -> None:
    pod = fake.add_pod("sizzle-s1")
    fake.fail_with = [None, "pod not found to terminate"]
    await runpod.terminate(pod.id)


@pytest.mark.parametrize(
    ("desired", "state"),
    [
        ("CREATED", InstanceState.PROVISIONING),
        ("RESTARTING", InstanceState.PROVISIONING),
        ("PAUSED", InstanceState.STOPPED),
        ("DEAD", InstanceState.FAILED),
        ("TERMINATED", None),
    ],
)
async def test_pod_states(
    runpod: RunPodProvider, fake: FakeRunPod, desired: str, state: InstanceState | None
) -> None:
    pod = fake.add_pod("sizzle-s1", status=desired)
    instance = await runpod.status(pod.id)
    assert (instance.state if instance else None) == state


async def test_the_chat_address_is_runpods_proxy_once_the_pod_is_up(
    runpod: RunPodProvider, fake: FakeRunPod
) -> None:
    (offer,) = await runpod.offers(TIERS["starter"])
    pod_id = await runpod.provision(offer, session_id="s1", model="llama3.1:8b")
    for _ in range(fake.runtime_null_polls):
        assert await runpod.chat_base_url(pod_id) is None  # the container is not up yet
    assert await runpod.chat_base_url(pod_id) == f"https://{pod_id}-11434.proxy.runpod.net"
    await runpod.terminate(pod_id)
    assert await runpod.chat_base_url(pod_id) is None
