"""The Vast.ai plugin and client, for real, against a fake Vast API (written from Vast's docs)
on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.domain.tiers import TIERS
from sizzle.errors import BadCredentials, NoCapacity, ProviderBadRequest, ProviderUnavailable
from sizzle.providers.base import Boot, InstanceState, ProviderContext
from sizzle.providers.registry import available_providers
from sizzle.providers.vast.client import VastClient
from sizzle.providers.vast.plugin import VastProvider, disk_gb
from sizzle.services.orchestrator import Orchestrator
from sizzle.settings import Settings
from sizzle.workload.boot import boot_script
from sizzle.workload.endpoint import SshEndpoint
from tests.providers.fakes.server import serve
from tests.providers.fakes.vast import API_KEY, PUBLIC_IPADDR, FakeVast, vast_app

SIZZLE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHv2mQ0dLr3x8Qm4x0rjvQ sizzle-s123"
USER_KEYS = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq8s2l8XoL0Yk1p2w2Zp6Q ann@laptop",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 ann@desktop",
)


@pytest.fixture
def fake() -> FakeVast:
    return FakeVast()


@pytest.fixture
def api_url(fake: FakeVast) -> Iterator[str]:
    with serve(vast_app(fake)) as url:
        yield f"{url}/api/v0"


waits: list[float] = []


async def _nap(seconds: float) -> None:
    waits.append(seconds)


@pytest.fixture
async def vast(
    settings: Settings, clock: FakeClock, db: Database, api_url: str
) -> Any:  # an async generator fixture: the provider, closed afterwards
    waits.clear()
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


async def _rent_one(vast: VastProvider, fake: FakeVast, *, boot: Boot | None = None) -> str:
    fake.offer(301, "RTX 4090")
    (offer,) = await vast.offers(TIERS["starter"])
    return await vast.provision(offer, session_id="s123", model="llama3.1:8b", boot=boot)


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

    disk = disk_gb(TIERS["starter"])
    assert [(o.offer_id, o.gpu_type) for o in offers] == [
        (f"102|{disk}", "RTX 5090"),
        (f"101|{disk}", "RTX 4090"),
    ]
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
    assert query["direct_port_count"] == {"gte": 1}  # SSH needs a direct port
    assert query["order"] == [["dph_total", "asc"]]
    # the price is quoted for the disk the rent will ask for, on hosts that have it
    assert query["allocated_storage"] == disk
    assert query["disk_space"] == {"gte": disk}


def test_the_disk_holds_the_largest_model_each_tier_can_serve() -> None:
    assert disk_gb(TIERS["starter"]) >= 24 + 20  # a 24 GB model and the image
    assert disk_gb(TIERS["ultra"]) >= 8 * 180
    sizes = [disk_gb(tier) for tier in TIERS.values()]
    assert sizes == sorted(sizes)


async def test_a100_size_comes_from_the_reported_memory(vast: VastProvider, fake: FakeVast) -> None:
    fake.offer(201, "A100 SXM4", gpu_ram=81920, dph_total=1.2)
    fake.offer(202, "A100 PCIE", gpu_ram=40960, dph_total=0.9)
    offers = await vast.offers(TIERS["pro"])
    disk = disk_gb(TIERS["pro"])
    assert {(o.offer_id, o.gpu_type, o.vram_gb_per_gpu) for o in offers} == {
        (f"201|{disk}", "A100 80GB", 80),
        (f"202|{disk}", "A100 40GB", 40),
    }
    (query,) = fake.bodies("POST", "/bundles/")
    assert set(query["gpu_name"]["in"]) >= {"A100 SXM4", "A100 PCIE"}


async def test_the_rent_runs_the_boot_script_as_the_entrypoints_argv(
    vast: VastProvider, fake: FakeVast
) -> None:
    boot = Boot(ssh_public_key=SIZZLE_KEY, user_ssh_keys=USER_KEYS, model="llama3.1:8b")
    external_id = await _rent_one(vast, fake, boot=boot)

    (query,) = fake.bodies("POST", "/bundles/")
    (body,) = fake.bodies("PUT", "/asks/301/")
    assert int(external_id) in fake.instances  # the fake, which enforces Vast's rules, took it
    assert body["image"].startswith("ollama/ollama")
    assert body["runtype"] == "args"
    # Vast runs onstart as the entrypoint and args as its argv: /bin/sh -c <script>
    assert [body["onstart"], *body["args"]] == ["/bin/sh", "-c", boot_script("instance.sh")]
    assert body["disk"] == query["allocated_storage"]  # the disk that was priced
    assert body["label"] == "sizzle-s123"


async def test_the_rent_env_is_the_dict_form_with_our_key_and_maps_only_ssh(
    vast: VastProvider, fake: FakeVast
) -> None:
    boot = Boot(ssh_public_key=SIZZLE_KEY, user_ssh_keys=USER_KEYS, model="llama3.1:8b")
    await _rent_one(vast, fake, boot=boot)

    (body,) = fake.bodies("PUT", "/asks/301/")
    env = body["env"]
    assert env["SIZZLE_SSH_PUBLIC_KEY"] == SIZZLE_KEY
    assert env["SIZZLE_USER_SSH_KEYS"].split("\n") == list(USER_KEYS)
    assert env["SIZZLE_MODEL"] == "llama3.1:8b"
    assert [key for key in env if key.startswith("-")] == ["-p 22:22"]  # no model server port
    assert not any("11434" in key or "11434" in value for key, value in env.items())


async def test_without_boot_no_key_is_sent_and_the_exited_container_is_a_failure(
    vast: VastProvider, fake: FakeVast
) -> None:
    external_id = await _rent_one(vast, fake)

    (body,) = fake.bodies("PUT", "/asks/301/")
    assert "SIZZLE_SSH_PUBLIC_KEY" not in body["env"]
    assert "SIZZLE_USER_SSH_KEYS" not in body["env"]
    assert body["env"]["SIZZLE_MODEL"] == "llama3.1:8b"
    # the script refuses to start without a key, and the container exits
    fake.instances[int(external_id)]["actual_status"] = "exited"
    instance = await vast.status(external_id)
    assert instance is not None and instance.state is InstanceState.FAILED
    assert instance.message == "vast instance is exited"


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"onstart": "until ollama list; do sleep 1; done"}, "entrypoint"),
        ({"args": "-c true"}, "list of strings"),
        ({"env": {"-e OLLAMA_HOST=0.0.0.0:11434": "1"}}, "neither a variable name"),
        ({"env": {"SIZZLE_SSH_PORT": 22}}, "values are strings"),
        ({"image": None}, "image is required"),
    ],
)
async def test_the_fake_refuses_what_vast_refuses(
    api_url: str, fake: FakeVast, change: dict[str, Any], refusal: str
) -> None:
    fake.offer(403, "RTX 4090")
    good = {"image": "ollama/ollama", "runtype": "args", "onstart": "/bin/sh", "args": ["-c", ""]}
    client = VastClient(api_key=API_KEY, base_url=api_url, sleep=_nap)
    try:
        with pytest.raises(ProviderBadRequest, match=refusal):
            await client.rent("403", {**good, **change})
        assert await client.rent("403", good) > 0
    finally:
        await client.aclose()


async def test_the_whole_life_of_an_instance(vast: VastProvider, fake: FakeVast) -> None:
    fake.offer(301, "H100 SXM", gpu_ram=81559, num_gpus=2, dph_total=4.5)
    (offer,) = await vast.offers(TIERS["beast"])
    assert (offer.gpu_type, offer.gpu_count, offer.vram_gb_per_gpu) == ("H100 80GB", 2, 80)
    boot = Boot(ssh_public_key=SIZZLE_KEY, model="llama3.1:8b")
    external_id = await vast.provision(offer, session_id="s123", model="llama3.1:8b", boot=boot)

    seen = []
    for _ in range(3):  # the instance boots on its own time, however often it is asked
        seen.append([(await vast.status(external_id)).state for _ in range(2)])  # type: ignore[union-attr]
        reachable = await vast.ssh_endpoint(external_id) is not None
        assert reachable == (seen[-1][0] is InstanceState.RUNNING)
        fake.advance()
    assert seen == [
        [InstanceState.PROVISIONING] * 2,  # actual_status null
        [InstanceState.PROVISIONING] * 2,  # loading
        [InstanceState.RUNNING] * 2,
    ]
    instance = await vast.status(external_id)
    assert instance is not None and instance.name == "sizzle-s123"
    endpoint = await vast.ssh_endpoint(external_id)
    assert endpoint is not None and endpoint.host == PUBLIC_IPADDR.strip()
    assert str(endpoint.port) == fake.instances[int(external_id)]["ports"]["22/tcp"][0]["HostPort"]

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
    assert await vast.status(external_id) is None
    assert await vast.ssh_endpoint(external_id) is None
    await vast.terminate(external_id)  # already gone: silent
    assert fake.destroyed == [int(external_id)]


async def test_boot_follows_the_clock_not_the_calls(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    fake = FakeVast(clock=clock, step_seconds=5)
    fake.offer(302, "RTX 4090")
    with serve(vast_app(fake)) as url:
        client = VastClient(api_key=API_KEY, base_url=f"{url}/api/v0", sleep=_nap)
        provider = VastProvider(_context(settings, clock, db, vast_api_key=API_KEY), client=client)
        try:
            (offer,) = await provider.offers(TIERS["starter"])
            external_id = await provider.provision(offer, session_id="t", model=None)
            states = []
            for _ in range(3):
                states.append((await provider.status(external_id)).state)  # type: ignore[union-attr]
                clock.advance(5)
            assert states == ["provisioning", "provisioning", "running"]
        finally:
            await provider.close()


async def test_the_ssh_endpoint_is_root_at_the_public_ip_and_the_port_mapped_to_22(
    vast: VastProvider, fake: FakeVast
) -> None:
    running = fake.add_instance("sizzle-s1")
    host_port = int(fake.instances[running]["ports"]["22/tcp"][0]["HostPort"])
    assert await vast.ssh_endpoint(str(running)) == SshEndpoint("203.0.113.7", host_port, "root")
    loading = fake.add_instance("sizzle-s2", actual_status="loading")
    assert await vast.ssh_endpoint(str(loading)) is None  # no address until it runs
    unmapped = fake.add_instance("sizzle-s3", ports=())
    assert fake.instances[unmapped]["ports"] == {}
    assert await vast.ssh_endpoint(str(unmapped)) is None
    assert await vast.ssh_endpoint("999999") is None  # gone


async def test_instances_are_listed_through_v1_across_pages(
    vast: VastProvider, fake: FakeVast
) -> None:
    ours = [fake.add_instance(f"sizzle-{n}") for n in range(3)]
    fake.add_instance("my-training-run")
    fake.add_instance(None)
    assert fake.page_size == 2

    listed = await vast.list_instances()

    assert [i.external_id for i in listed] == [str(i) for i in ours]
    pages = [query for path, query in fake.queries if path == "/api/v1/instances/"]
    assert len(pages) == 3
    assert "after_token" not in pages[0]
    assert pages[1]["after_token"] and pages[2]["after_token"] != pages[1]["after_token"]
    assert not [q for p, q in fake.queries if p == "/instances/"]  # never the retired v0 list


async def test_the_v0_listing_is_gone(api_url: str) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        response = await http.get(f"{api_url}/instances/", params={"owner": "me"})
    assert response.status_code == 410


@pytest.mark.parametrize("status", [404, 410])
async def test_a_taken_offer_is_no_capacity(
    vast: VastProvider, fake: FakeVast, status: int
) -> None:
    fake.no_such_ask_status = status
    fake.offer(401, "RTX 4090")
    (offer,) = await vast.offers(TIERS["starter"])
    await vast.provision(offer, session_id="first", model=None)
    with pytest.raises(NoCapacity, match="no_such_ask"):
        await vast.provision(offer, session_id="second", model=None)
    assert len(fake.instances) == 1


async def test_a_taken_or_forbidden_offer_moves_on_and_vast_stays_usable(
    vast: VastProvider, fake: FakeVast, clock: FakeClock
) -> None:
    fake.offer(501, "RTX 4090", dph_total=0.20)
    fake.offer(502, "RTX 4090", dph_total=0.25)
    fake.offer(503, "RTX 4090", dph_total=0.30)
    fake.taken.add(501)
    fake.forbidden.add(502)
    orchestrator = Orchestrator({"vast": vast}, clock=clock)

    launch = await orchestrator.launch(TIERS["starter"], session_id="s9", model=None)

    assert [(a.offer.offer_id.split("|")[0], a.outcome) for a in launch.attempts] == [
        ("501", "no_capacity"),
        ("502", "no_capacity"),
        ("503", "launched"),
    ]
    assert "403" in (launch.attempts[1].error or "")
    status = orchestrator.status["vast"]
    assert status.disabled_reason is None and status.consecutive_failures == 0
    assert status.usable(clock.now())


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


async def test_a_wrong_key_is_bad_credentials(
    settings: Settings, clock: FakeClock, db: Database, api_url: str, fake: FakeVast
) -> None:
    provider = VastProvider(
        _context(settings, clock, db, vast_api_key="wrong", vast_api_url=api_url)
    )
    try:
        with pytest.raises(BadCredentials):
            await provider.offers(TIERS["starter"])
        with pytest.raises(BadCredentials):
            await provider.list_instances()
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
    settings: Settings, clock: FakeClock, db: Database, api_url: str, fake: FakeVast
) -> None:
    provider = VastProvider(
        _context(settings, clock, db, vast_api_key=API_KEY, vast_api_url=api_url)
    )
    try:
        assert (await provider.health()).healthy
        assert [p for p, _ in fake.queries] == ["/api/v1/instances/"]
    finally:
        await provider.close()


async def test_plain_text_429s_are_waited_out(vast: VastProvider, fake: FakeVast) -> None:
    fake.offer(601, "RTX 4090")
    fake.throttle = 2
    offers = await vast.offers(TIERS["starter"])
    assert [o.offer_id.split("|")[0] for o in offers] == ["601"]
    assert fake.throttled == 2
    assert len(fake.bodies("POST", "/bundles/")) == 3
    assert waits == [1.0, 2.0]  # no Retry-After: a short, growing wait

    fake.throttle = 2  # renting is not safe to repeat, but a 429 was never executed
    external_id = await vast.provision(offers[0], session_id="r", model=None)
    assert int(external_id) in fake.instances

    fake.throttle = 10  # past a few tries it is Vast being unavailable, not a hang
    with pytest.raises(ProviderUnavailable, match="429"):
        await vast.list_instances()
    assert fake.throttled == 2 + 2 + 4


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
    unlabelled = fake.add_instance(None)

    listed = await vast.list_instances()
    assert [(i.external_id, i.name) for i in listed] == [(str(ours), "sizzle-mine")]

    await vast.terminate(str(theirs))
    await vast.terminate(str(unlabelled))
    assert theirs in fake.instances and unlabelled in fake.instances
    assert fake.bodies("DELETE", f"/instances/{theirs}/") == []
    await vast.terminate(str(ours))
    assert fake.destroyed == [ours]


@pytest.mark.parametrize("gone_code", ["not_found", "no_such_instance"])
async def test_a_gone_instance_is_gone(vast: VastProvider, fake: FakeVast, gone_code: str) -> None:
    fake.gone_code = gone_code
    assert await vast.status("4242") is None
    await vast.terminate("4242")
    await vast.client().destroy("4242")  # silent too
    fake.gone_as_null = True
    assert await vast.status("4242") is None
