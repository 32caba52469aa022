"""The RunPod plugin and client, for real, against a fake RunPod API (written from RunPod's
REST documentation) on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.domain.tiers import TIERS
from sizzle.errors import BadCredentials, NoCapacity, ProviderBadRequest, ProviderUnavailable
from sizzle.providers.base import Boot, InstanceState, Offer, ProviderContext
from sizzle.providers.registry import available_providers
from sizzle.providers.runpod.plugin import RunPodProvider
from sizzle.services.orchestrator import Orchestrator
from sizzle.settings import Settings
from sizzle.workload.boot import boot_script
from sizzle.workload.endpoint import SshEndpoint
from tests.providers.fakes.runpod import (
    PUBLIC_IP,
    FakeGpuType,
    FakeRunPod,
    build_app,
    create_refusal,
)
from tests.providers.fakes.server import serve

SIZZLE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHv2mQ0dLr3x8Qm4x0rjvQ sizzle-s1"
USER_KEYS = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq8s2l8XoL0Yk1p2w2Zp6Q ann@laptop",)
BOOT = Boot(ssh_public_key=SIZZLE_KEY, user_ssh_keys=USER_KEYS, model="llama3.1:8b")
RTX_4090 = "NVIDIA GeForce RTX 4090"


def _catalog() -> list[FakeGpuType]:
    return [
        FakeGpuType(RTX_4090, "RTX 4090", 24, 0.69, {1: "High"}),
        FakeGpuType("NVIDIA GeForce RTX 5090", "RTX 5090", 32, None, {1: "High"}),  # no price
        FakeGpuType("NVIDIA GeForce RTX 3090", "RTX 3090", 24, 0.22, {1: "High"}),  # not rented
        FakeGpuType("NVIDIA A100 80GB PCIe", "A100 80GB", 80, 1.64, {1: None}),  # out of stock
        FakeGpuType("NVIDIA A100-SXM4-80GB", "A100 SXM", 80, 1.19, {1: "Medium"}),
        FakeGpuType("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.69, {1: "High", 3: "Low", 8: None}),
    ]


@pytest.fixture
def fake(clock: FakeClock) -> FakeRunPod:
    return FakeRunPod(gpu_types=_catalog(), clock=clock, boot_seconds=10)


@pytest.fixture
def url(fake: FakeRunPod) -> Iterator[str]:
    with serve(build_app(fake)) as base_url:
        yield base_url


def _runpod(
    settings: Settings, clock: FakeClock, db: Database, url: str, key: str = "rp-test-key"
) -> RunPodProvider:
    overrides = {
        "runpod_api_key": key,
        "runpod_api_url": url,
        "runpod_rest_url": f"{url}/v1",
        "provider_timeout_seconds": 5,
    }
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


async def _launch(runpod: RunPodProvider, boot: Boot | None = BOOT) -> str:
    (offer,) = await runpod.offers(TIERS["starter"])
    return await runpod.provision(offer, session_id="s1", model="llama3.1:8b", boot=boot)


def _by_id(offers: list[Offer]) -> dict[str, int]:
    return {offer.offer_id: offer.upstream_micros_per_hour for offer in offers}


def test_the_plugin_is_registered() -> None:
    assert "runpod" in available_providers()


async def test_offers_per_tier_price_per_gpu_times_count_exactly(runpod: RunPodProvider) -> None:
    (starter,) = await runpod.offers(TIERS["starter"])
    assert (starter.provider, starter.offer_id, starter.gpu_type) == (
        "runpod",
        f"{RTX_4090}|1",
        "RTX 4090",
    )
    assert (starter.gpu_count, starter.vram_gb_per_gpu) == (1, 24)
    assert starter.upstream_micros_per_hour == 690_000

    # the out-of-stock A100 80GB PCIe is skipped; the SXM4 one is normalized to A100 80GB
    (pro,) = await runpod.offers(TIERS["pro"])
    assert (pro.offer_id, pro.gpu_type, pro.upstream_micros_per_hour) == (
        "NVIDIA A100-SXM4-80GB|1",
        "A100 80GB",
        1_190_000,
    )
    # 2.69 $/h per GPU x 3 is 8.07 exactly (a float product would be 8.069999...)
    assert _by_id(await runpod.offers(TIERS["beast"])) == {
        "NVIDIA H100 80GB HBM3|1": 2_690_000,
        "NVIDIA H100 80GB HBM3|3": 8_070_000,
    }
    assert await runpod.offers(TIERS["ultra"]) == []


async def test_the_pod_runs_the_boot_script_as_its_entrypoint(
    runpod: RunPodProvider, fake: FakeRunPod
) -> None:
    pod = fake.pods[await _launch(runpod)]
    # the image's ENTRYPOINT (/bin/ollama) is replaced, not handed our script as arguments
    assert pod.argv[:2] == ["/bin/sh", "-c"]
    assert pod.argv[2] == boot_script("instance.sh")
    (body,) = fake.calls("POST", "/pods")
    assert body["dockerEntrypoint"][:2] == ["/bin/sh", "-c"]
    assert (pod.name, pod.image) == ("sizzle-s1", "ollama/ollama:latest")
    assert (body["gpuTypeIds"], body["gpuCount"], body["cloudType"]) == ([RTX_4090], 1, "SECURE")
    assert body["supportPublicIp"] is True
    assert body["containerDiskInGb"] >= 24 + 20  # a 24 GB model and the image


async def test_the_env_is_an_object_with_our_key_and_the_model_and_only_ssh_is_exposed(
    runpod: RunPodProvider, fake: FakeRunPod
) -> None:
    pod = fake.pods[await _launch(runpod)]
    assert pod.env["SIZZLE_SSH_PUBLIC_KEY"] == SIZZLE_KEY
    assert pod.env["SIZZLE_USER_SSH_KEYS"] == USER_KEYS[0]
    assert pod.env["SIZZLE_MODEL"] == "llama3.1:8b"
    assert pod.env["SIZZLE_SSH_PORT"] == "22"
    assert pod.ports == ["22/tcp"]  # never the model server's port
    (body,) = fake.calls("POST", "/pods")
    assert "OLLAMA_PORT" not in body["env"]  # the script's loopback default stands


async def test_without_boot_no_key_is_sent(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    pod = fake.pods[await _launch(runpod, boot=None)]
    assert "SIZZLE_SSH_PUBLIC_KEY" not in pod.env
    assert pod.env["SIZZLE_MODEL"] == "llama3.1:8b"


def test_the_fake_refuses_what_runpod_refuses() -> None:
    good: dict[str, Any] = {"imageName": "ollama/ollama", "gpuTypeIds": [RTX_4090]}
    assert create_refusal(good) is None
    assert "imageName" in (create_refusal({"gpuTypeIds": [RTX_4090]}) or "")
    assert "gpuTypeIds" in (create_refusal({**good, "gpuTypeIds": RTX_4090}) or "")
    assert "gpuTypeIds" in (create_refusal({"imageName": "x"}) or "")
    assert "cloudType" in (create_refusal({**good, "cloudType": "ALL"}) or "")
    assert "env" in (create_refusal({**good, "env": [{"key": "A", "value": "1"}]}) or "")
    assert "ports" in (create_refusal({**good, "ports": "22/tcp,8888/http"}) or "")
    assert "dockerEntrypoint" in (create_refusal({**good, "dockerEntrypoint": "sh -c x"}) or "")


async def test_the_ssh_endpoint_appears_once_the_pod_has_an_ip_and_port_22(
    runpod: RunPodProvider, fake: FakeRunPod, clock: FakeClock
) -> None:
    pod_id = await _launch(runpod)
    assert await runpod.ssh_endpoint(pod_id) is None  # RUNNING, but still initializing
    instance = await runpod.status(pod_id)
    assert instance is not None and instance.state is InstanceState.PROVISIONING
    clock.advance(10)
    endpoint = await runpod.ssh_endpoint(pod_id)
    port = fake.pods[pod_id].port_mappings["22"]
    assert endpoint == SshEndpoint(PUBLIC_IP, port, "root")
    instance = await runpod.status(pod_id)
    assert instance is not None and instance.state is InstanceState.RUNNING
    assert set(fake.pods[pod_id].port_mappings) == {"22"}


async def test_stop_start_and_terminate(
    runpod: RunPodProvider, fake: FakeRunPod, clock: FakeClock
) -> None:
    pod_id = await _launch(runpod)
    clock.advance(10)
    await runpod.stop(pod_id)
    instance = await runpod.status(pod_id)
    assert instance is not None and instance.state is InstanceState.STOPPED
    assert await runpod.ssh_endpoint(pod_id) is None

    await runpod.start(pod_id)  # the boot script runs again: the model is pulled again
    instance = await runpod.status(pod_id)
    assert instance is not None and instance.state is InstanceState.PROVISIONING
    clock.advance(10)
    instance = await runpod.status(pod_id)
    assert instance is not None and instance.state is InstanceState.RUNNING

    await runpod.terminate(pod_id)
    assert fake.terminated == [pod_id] and await runpod.status(pod_id) is None
    await runpod.terminate(pod_id)  # already gone: silent
    await runpod.terminate("neverexisted1")  # unknown to RunPod: silent
    assert len(fake.calls("DELETE", f"/pods/{pod_id}")) == 1


async def test_a_pod_resumed_without_a_gpu_is_no_capacity_and_stopped_again(
    runpod: RunPodProvider, fake: FakeRunPod
) -> None:
    pod_id = await _launch(runpod)
    await runpod.stop(pod_id)
    fake.resume_without_gpu = True
    with pytest.raises(NoCapacity, match="without a GPU"):
        await runpod.start(pod_id)
    assert fake.pods[pod_id].desired_status == "EXITED"  # not left running, billing CPU
    assert len(fake.calls("POST", f"/pods/{pod_id}/stop")) == 2


async def test_capacity_errors_are_no_capacity(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    pod_id = await _launch(runpod)
    await runpod.stop(pod_id)
    fake.no_capacity = True
    (offer,) = await runpod.offers(TIERS["starter"])
    with pytest.raises(NoCapacity, match="no longer any instances available"):
        await runpod.provision(offer, session_id="s2", model=None, boot=BOOT)
    with pytest.raises(NoCapacity):
        await runpod.start(pod_id)
    assert [pod.name for pod in fake.pods.values()] == ["sizzle-s1"]


async def test_no_capacity_moves_on_to_the_next_offer(
    runpod: RunPodProvider, fake: FakeRunPod, clock: FakeClock
) -> None:
    fake.sold_out.add("NVIDIA H100 80GB HBM3")
    fake.gpu_types.append(FakeGpuType("NVIDIA H100 PCIe", "H100 PCIe", 80, 2.99, {1: "Low"}))
    orchestrator = Orchestrator({"runpod": runpod}, clock=clock)

    launch = await orchestrator.launch(TIERS["beast"], session_id="s9", model=None)

    outcomes = [(a.offer.offer_id, a.outcome) for a in launch.attempts]
    assert outcomes[0] == ("NVIDIA H100 80GB HBM3|1", "no_capacity")
    assert outcomes[-1] == ("NVIDIA H100 PCIe|1", "launched")
    assert orchestrator.status["runpod"].disabled_reason is None


async def test_a_missing_pod_is_gone(runpod: RunPodProvider) -> None:
    assert await runpod.status("nosuchpod1") is None
    assert await runpod.ssh_endpoint("nosuchpod1") is None
    with pytest.raises(ProviderBadRequest, match="gone"):
        await runpod.start("nosuchpod1")


@pytest.mark.parametrize(
    "message",
    [
        "Something went wrong. Please try again later or contact support.",
        'Field "gpuTypes" argument "input" of type "GpuTypeFilter" is invalid',
    ],
)
async def test_http_200_graphql_errors_on_prices_are_mapped(
    runpod: RunPodProvider, fake: FakeRunPod, message: str
) -> None:
    fake.fail_with = [message]
    with pytest.raises(ProviderBadRequest):
        await runpod.offers(TIERS["starter"])
    assert len(fake.calls("POST", "/graphql")) == 1  # a refused query is not repeated


async def test_a_bad_key_is_bad_credentials(
    settings: Settings, clock: FakeClock, db: Database, url: str
) -> None:
    provider = _runpod(settings, clock, db, url, key="wrong")
    try:
        with pytest.raises(BadCredentials):
            await provider.offers(TIERS["starter"])
        with pytest.raises(BadCredentials):
            await provider.list_instances()
        assert not (await provider.health()).healthy
    finally:
        await provider.close()


async def test_without_a_key_offers_are_empty_and_health_says_why(
    settings: Settings, clock: FakeClock, db: Database, url: str, fake: FakeRunPod
) -> None:
    provider = _runpod(settings, clock, db, url, key="")
    try:
        assert await provider.offers(TIERS["starter"]) == []
        health = await provider.health()
        assert not health.healthy
        assert health.detail and "SIZZLE_RUNPOD_API_KEY" in health.detail
        with pytest.raises(ProviderUnavailable):
            await provider.list_instances()
    finally:
        await provider.close()
    assert fake.requests == []


async def test_health_lists_pods_with_a_good_key(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    assert (await runpod.health()).healthy
    assert fake.requests[-1][:2] == ("GET", "/pods")


async def test_429s_are_waited_out(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    fake.rate_limit = 2
    (offer,) = await runpod.offers(TIERS["starter"])
    fake.rate_limit = 2  # a create too: a 429 was refused, never executed
    pod_id = await runpod.provision(offer, session_id="s1", model=None, boot=BOOT)
    assert list(fake.pods) == [pod_id]


async def test_list_instances_holds_only_ours(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    fake.add_pod("my-training-job")
    stopped = fake.add_pod("sizzle-old", status="EXITED")
    new = await _launch(runpod)

    instances = {i.external_id: i for i in await runpod.list_instances()}
    assert set(instances) == {stopped.id, new}
    assert instances[stopped.id].state is InstanceState.STOPPED
    assert instances[new].name == "sizzle-s1"


async def test_a_foreign_pod_is_never_touched(runpod: RunPodProvider, fake: FakeRunPod) -> None:
    foreign = fake.add_pod("my-training-job")
    await runpod.terminate(foreign.id)
    await runpod.stop(foreign.id)
    with pytest.raises(ProviderBadRequest):
        await runpod.start(foreign.id)
    assert foreign.id in fake.pods and foreign.desired_status == "RUNNING"
    assert {method for method, _, _ in fake.requests} == {"GET"}


@pytest.mark.parametrize(
    ("desired", "gpus", "state"),
    [
        ("CREATED", 1, InstanceState.PROVISIONING),
        ("RESTARTING", 1, InstanceState.PROVISIONING),
        ("EXITED", 1, InstanceState.STOPPED),
        ("PAUSED", 1, InstanceState.STOPPED),
        ("DEAD", 1, InstanceState.FAILED),
        ("RUNNING", 0, InstanceState.FAILED),  # up, but without a GPU: never served, never billed
        ("TERMINATED", 1, None),
    ],
)
async def test_pod_states(
    runpod: RunPodProvider, fake: FakeRunPod, desired: str, gpus: int, state: InstanceState | None
) -> None:
    pod = fake.add_pod("sizzle-s1", status=desired, gpu_count=gpus)
    instance = await runpod.status(pod.id)
    assert (instance.state if instance else None) == state
