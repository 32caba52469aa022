"""The Lambda Cloud plugin, through its real client, against a fake Lambda API on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import asyncssh
import httpx
import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.domain.tiers import TIERS
from sizzle.errors import BadCredentials, NoCapacity, ProviderBadRequest
from sizzle.providers.base import InstanceState, Offer, ProviderContext
from sizzle.providers.lambdalabs.plugin import LambdaProvider
from sizzle.providers.registry import available_providers
from sizzle.settings import Settings
from sizzle.workload.endpoint import SshEndpoint
from tests.providers.fakes.lambdalabs import FakeLambda, build_app
from tests.providers.fakes.server import serve

OTHER_KEY = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


@pytest.fixture
def fake(clock: FakeClock) -> FakeLambda:
    state = FakeLambda(clock=clock)
    state.add_type("gpu_1x_a100", "1x A100 (40 GB SXM4)", 129, ["us-east-1", "us-west-1"])
    state.add_type("gpu_1x_a100_sxm4", "1x A100 (80 GB SXM4)", 179, [])
    state.add_type("gpu_8x_a100_80gb_sxm4", "8x A100 (80 GB SXM4)", 1432, ["us-west-2"])
    state.add_type("gpu_1x_h100_pcie", "1x H100 (80 GB PCIe)", 249, ["us-south-1"])
    state.add_type("gpu_8x_h100_sxm5", "8x H100 (80 GB SXM5)", 2392, ["us-east-3"])
    state.add_type("gpu_2x_h100_sxm5", "a new kind of box", 598, ["us-east-3"])
    state.add_type("gpu_1x_a10", "1x A10 (24 GB PCIe)", 75, ["us-east-1"])
    state.add_type("gpu_1x_gh200", "1x GH200 (96 GB)", 149, ["us-east-1"])
    state.add_type("gpu_8x_b200_sxm6", "8x B200 (180 GB SXM6)", 3992, ["us-east-1"])
    return state


@pytest.fixture
def url(fake: FakeLambda) -> Iterator[str]:
    with serve(build_app(fake)) as base:
        yield f"{base}/api/v1"


class Sleeps:
    """An injected sleep that moves the fake clock instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def sleeps(clock: FakeClock) -> Sleeps:
    return Sleeps(clock)


def plugin(
    settings: Settings,
    clock: FakeClock,
    db: Database,
    url: str,
    sleeps: Sleeps,
    key: str = "lambda-test-key",
) -> LambdaProvider:
    overrides = {"lambda_api_key": key, "lambda_api_url": url, "provider_timeout_seconds": 5}
    context = ProviderContext(settings=settings.model_copy(update=overrides), clock=clock, db=db)
    return LambdaProvider(context, sleep=sleeps)


@pytest.fixture
def lam(
    settings: Settings, clock: FakeClock, db: Database, url: str, sleeps: Sleeps
) -> LambdaProvider:
    return plugin(settings, clock, db, url, sleeps)


def test_registered_as_lambda() -> None:
    assert "lambda" in available_providers()
    assert LambdaProvider.name == "lambda"
    assert LambdaProvider.label == "Lambda Cloud"


async def test_offers_only_where_there_is_capacity(lam: LambdaProvider) -> None:
    assert await lam.offers(TIERS["pro"]) == [
        Offer("lambda", "gpu_1x_a100|us-east-1", "A100 40GB", 1, 40, 1_290_000),
    ]  # the 1x A100 80 GB has no region with capacity; the 8x is too many for pro
    beast = await lam.offers(TIERS["beast"])
    assert beast == [
        Offer("lambda", "gpu_1x_h100_pcie|us-south-1", "H100 80GB", 1, 80, 2_490_000),
        Offer("lambda", "gpu_2x_h100_sxm5|us-east-3", "H100 80GB", 2, 80, 5_980_000),
        Offer("lambda", "gpu_8x_h100_sxm5|us-east-3", "H100 80GB", 8, 80, 23_920_000),
    ]  # the 2x came from its type name: its description does not parse
    assert await lam.offers(TIERS["ultra"]) == [
        Offer("lambda", "gpu_8x_b200_sxm6|us-east-1", "B200", 8, 180, 39_920_000),
    ]
    assert await lam.offers(TIERS["starter"]) == []  # A10 and GH200 are not Sizzle GPUs


async def test_capacity_changes_are_seen(fake: FakeLambda, lam: LambdaProvider) -> None:
    fake.capacity["gpu_1x_a100"] = []
    fake.capacity["gpu_1x_a100_sxm4"] = ["us-west-1"]
    (offer,) = await lam.offers(TIERS["pro"])
    assert (offer.offer_id, offer.gpu_type, offer.vram_gb_per_gpu) == (
        "gpu_1x_a100_sxm4|us-west-1",
        "A100 80GB",
        80,
    )


async def test_the_whole_flow(fake: FakeLambda, lam: LambdaProvider) -> None:
    fake.boot_polls = 2
    (offer,) = await lam.offers(TIERS["pro"])
    external_id = await lam.provision(offer, session_id="s1", model=None)

    (launch,) = fake.launches
    assert launch["name"] == "sizzle-s1"
    assert (launch["region_name"], launch["instance_type_name"]) == ("us-east-1", "gpu_1x_a100")
    assert launch["ssh_key_names"] == [lam.account.name]  # registered first: the account had none
    assert launch["quantity"] == 1
    (registered,) = fake.ssh_keys
    assert registered["name"] == lam.account.name
    assert lam.account.is_registered_as(registered["public_key"])

    for _ in range(2):
        booting = await lam.status(external_id)
        assert booting is not None and booting.state is InstanceState.PROVISIONING
        assert fake.instances[external_id].ip is None
    running = await lam.status(external_id)
    assert running is not None
    assert (running.state, running.name, running.external_id) == (
        InstanceState.RUNNING,
        "sizzle-s1",
        external_id,
    )
    assert fake.instances[external_id].ip is not None
    assert [i.external_id for i in await lam.list_instances()] == [external_id]

    await lam.terminate(external_id)
    assert fake.terminate_calls == [[external_id]]
    assert await lam.status(external_id) is None
    assert await lam.list_instances() == []
    await lam.terminate(external_id)  # already gone: silent, nothing sent
    assert fake.terminate_calls == [[external_id]]
    await lam.close()


async def test_another_key_of_the_account_is_never_named(
    fake: FakeLambda, lam: LambdaProvider
) -> None:
    fake.ssh_keys.append({"id": "k1", "name": "ops", "public_key": OTHER_KEY})
    (offer,) = await lam.offers(TIERS["pro"])
    await lam.provision(offer, session_id="s1", model=None)
    assert fake.launches[0]["ssh_key_names"] == [lam.account.name]
    assert [key["name"] for key in fake.ssh_keys] == ["ops", lam.account.name]


async def test_our_key_is_registered_once_and_found_again_by_every_process(
    settings: Settings,
    clock: FakeClock,
    db: Database,
    url: str,
    sleeps: Sleeps,
    fake: FakeLambda,
    lam: LambdaProvider,
) -> None:
    (offer,) = await lam.offers(TIERS["pro"])
    await lam.provision(offer, session_id="s1", model=None)
    clock.advance(10)
    await lam.provision(offer, session_id="s2", model=None)
    other = plugin(settings, clock, db, url, sleeps)  # another replica, same secret key
    clock.advance(10)
    await other.provision(offer, session_id="s3", model=None)
    assert len(fake.ssh_keys) == 1
    assert {tuple(launch["ssh_key_names"]) for launch in fake.launches} == {(lam.account.name,)}
    assert other.boot_key().export_public_key() == lam.boot_key().export_public_key()


async def test_a_replica_registering_our_key_first_is_no_failure(
    fake: FakeLambda, lam: LambdaProvider
) -> None:
    account = lam.account
    fake.racing_key = {"id": "k9", "name": account.name, "public_key": account.public_key}
    (offer,) = await lam.offers(TIERS["pro"])
    await lam.provision(offer, session_id="s1", model=None)
    assert fake.launches[0]["ssh_key_names"] == [account.name]
    assert fake.ssh_keys == [{"id": "k9", "name": account.name, "public_key": account.public_key}]


async def test_our_key_registered_under_another_name_is_used_by_that_name(
    fake: FakeLambda, lam: LambdaProvider
) -> None:
    fake.ssh_keys.append({"id": "k1", "name": "sizzle", "public_key": lam.account.public_key})
    (offer,) = await lam.offers(TIERS["pro"])
    await lam.provision(offer, session_id="s1", model=None)
    assert fake.launches[0]["ssh_key_names"] == ["sizzle"]
    assert len(fake.ssh_keys) == 1


async def test_our_name_taken_by_another_key_launches_nothing(
    fake: FakeLambda, lam: LambdaProvider
) -> None:
    fake.ssh_keys.append({"id": "k1", "name": lam.account.name, "public_key": OTHER_KEY})
    (offer,) = await lam.offers(TIERS["pro"])
    with pytest.raises(ProviderBadRequest, match="registered with another public key"):
        await lam.provision(offer, session_id="s1", model=None)
    assert fake.launches == []


async def test_the_vm_is_reached_as_ubuntu_once_active_with_an_address(
    fake: FakeLambda, lam: LambdaProvider
) -> None:
    fake.boot_polls = 1
    (offer,) = await lam.offers(TIERS["pro"])
    external_id = await lam.provision(offer, session_id="s1", model="llama3.2")
    assert await lam.ssh_endpoint(external_id) is None  # booting: no ip yet
    endpoint = await lam.ssh_endpoint(external_id)
    ip = fake.instances[external_id].ip
    assert ip is not None
    assert endpoint == SshEndpoint(host=ip, port=22, username="ubuntu")
    await lam.terminate(external_id)
    assert await lam.ssh_endpoint(external_id) is None
    assert await lam.ssh_endpoint("no-such-instance") is None


def test_lambda_serves_models_and_boots_its_vms_over_ssh() -> None:
    assert LambdaProvider.cannot_serve_models is None
    assert LambdaProvider.boot_script == "vm.sh"


async def fake_call(url: str, method: str, path: str, body: object) -> httpx.Response:
    headers = {"Authorization": "Bearer lambda-test-key"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        return await http.request(method, path, json=body)


def launch_body(keys: object) -> dict[str, object]:
    return {
        "region_name": "us-east-1",
        "instance_type_name": "gpu_1x_a100",
        "ssh_key_names": keys,
        "file_system_names": [],
        "quantity": 1,
        "name": "sizzle-x",
    }


@pytest.mark.parametrize(
    "keys", [[], ["nobody"], ["ops", "ops"], None], ids=["none", "unknown", "two", "missing"]
)
async def test_the_fake_refuses_a_launch_without_exactly_one_registered_key(
    fake: FakeLambda, url: str, clock: FakeClock, keys: object
) -> None:
    fake.ssh_keys.append({"id": "k1", "name": "ops", "public_key": OTHER_KEY})
    refused = await fake_call(url, "POST", "instance-operations/launch", launch_body(keys))
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "global/invalid-parameters"
    assert fake.instances == {}
    clock.advance(10)
    launched = await fake_call(url, "POST", "instance-operations/launch", launch_body(["ops"]))
    assert launched.status_code == 200, launched.text


async def test_the_fake_refuses_a_key_name_taken_or_a_key_that_does_not_parse(
    fake: FakeLambda, url: str
) -> None:
    added = await fake_call(url, "POST", "ssh-keys", {"name": "ops", "public_key": OTHER_KEY})
    assert added.status_code == 200 and added.json()["data"]["private_key"] is None
    for body in (
        {"name": "ops", "public_key": OTHER_KEY},
        {"name": "x" * 65, "public_key": OTHER_KEY},
        {"name": "bad", "public_key": "ssh-ed25519 AAAAnot-a-key"},
    ):
        refused = await fake_call(url, "POST", "ssh-keys", body)
        assert refused.status_code == 400, body
        assert refused.json()["error"]["code"] == "global/invalid-parameters"
    made = await fake_call(url, "POST", "ssh-keys", {"name": "made-here"})
    assert made.json()["data"]["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY")
    assert [key["name"] for key in fake.ssh_keys] == ["ops", "made-here"]


async def test_unknown_and_unhealthy_instances(fake: FakeLambda, lam: LambdaProvider) -> None:
    assert await lam.status("no-such-instance") is None
    await lam.terminate("no-such-instance")  # silent
    sick = fake.add_instance("sizzle-s9", status="unhealthy")
    status = await lam.status(sick.id)
    assert status is not None and status.state is InstanceState.FAILED


async def test_insufficient_capacity_is_no_capacity(fake: FakeLambda, lam: LambdaProvider) -> None:
    (offer,) = await lam.offers(TIERS["pro"])
    fake.capacity["gpu_1x_a100"] = []  # gone between the offer and the launch
    with pytest.raises(NoCapacity, match="capacity"):
        await lam.provision(offer, session_id="s1", model=None)
    assert fake.instances == {}


async def test_a_bad_key_is_bad_credentials(
    settings: Settings, clock: FakeClock, db: Database, url: str, sleeps: Sleeps
) -> None:
    bad = plugin(settings, clock, db, url, sleeps, key="wrong")
    with pytest.raises(BadCredentials):
        await bad.offers(TIERS["pro"])
    health = await bad.health()
    assert not health.healthy and "lambda" in (health.detail or "")


async def test_no_key_is_unhealthy_and_offers_nothing(
    settings: Settings, clock: FakeClock, db: Database, url: str, sleeps: Sleeps
) -> None:
    unset = plugin(settings, clock, db, url, sleeps, key="")
    health = await unset.health()
    assert not health.healthy and "SIZZLE_LAMBDA_API_KEY" in (health.detail or "")
    assert await unset.offers(TIERS["pro"]) == []
    assert await unset.list_instances() == []
    with pytest.raises(BadCredentials):
        await unset.status("x")


async def test_healthy_with_a_good_key(lam: LambdaProvider) -> None:
    health = await lam.health()
    assert health.healthy


async def test_other_errors_are_bad_requests(lam: LambdaProvider) -> None:
    offer = Offer("lambda", "gpu_9x_nothing|us-east-1", "H100 80GB", 9, 80, 0)
    with pytest.raises(ProviderBadRequest, match="global/invalid-parameters"):
        await lam.provision(offer, session_id="s1", model=None)
    with pytest.raises(ProviderBadRequest, match="malformed offer id"):
        await lam.provision(
            Offer("lambda", "no-region", "H100 80GB", 1, 80, 0), session_id="x", model=None
        )


async def test_launches_are_spaced_by_the_clock(
    fake: FakeLambda, lam: LambdaProvider, clock: FakeClock, sleeps: Sleeps
) -> None:
    (offer,) = await lam.offers(TIERS["pro"])
    first = await lam.provision(offer, session_id="s1", model=None)
    clock.advance(3)
    second = await lam.provision(offer, session_id="s2", model=None)
    assert first != second
    assert sleeps.calls == [pytest.approx(7)]  # the rest of the 10 s window, on the fake clock
    assert fake.rate_limited == 0
    clock.advance(12)
    await lam.provision(offer, session_id="s3", model=None)
    assert sleeps.calls == [pytest.approx(7)]  # no wait once the window has passed


async def test_a_429_from_the_launch_limit_is_waited_out(
    settings: Settings,
    clock: FakeClock,
    db: Database,
    url: str,
    sleeps: Sleeps,
    fake: FakeLambda,
    lam: LambdaProvider,
) -> None:
    (offer,) = await lam.offers(TIERS["pro"])
    await lam.provision(offer, session_id="s1", model=None)
    other = plugin(settings, clock, db, url, sleeps)  # another process: knows no last launch
    await other.provision(offer, session_id="s2", model=None)
    assert fake.rate_limited == 1
    assert sleeps.calls == [pytest.approx(10)]  # the fake's Retry-After
    assert len(fake.instances) == 2


async def test_foreign_instances_are_never_listed_nor_terminated(
    fake: FakeLambda, lam: LambdaProvider
) -> None:
    foreign = fake.add_instance("training-run-7")
    unnamed = fake.add_instance(None)
    ours = fake.add_instance("sizzle-s1")
    fake.add_instance("sizzle-old", status="terminated")
    assert [i.external_id for i in await lam.list_instances()] == [ours.id]
    await lam.terminate(foreign.id)
    await lam.terminate(unnamed.id)
    assert fake.terminate_calls == []
    assert foreign.status == unnamed.status == "active"
