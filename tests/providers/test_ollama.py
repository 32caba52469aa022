"""The ollama plugin and client, for real, against fake Ollama nodes on loopback."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, ProviderInstance
from sizzle.domain.tiers import TIERS
from sizzle.errors import BadRequest, NoCapacity, ProviderUnavailable
from sizzle.providers.base import InstanceState, ProviderContext
from sizzle.providers.ollama.client import OllamaClient
from sizzle.providers.ollama.plugin import OllamaProvider
from sizzle.providers.registry import load_providers
from sizzle.settings import Settings
from tests.helpers import NODE_TOKEN as TOKEN
from tests.helpers import make_user
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.server import free_port, serve


def node(name: str, url: str, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "url": url,
        "gpu": "NVIDIA GeForce RTX 4090",
        "gpu_count": 1,
        "vram_gb": 24,
        "price_per_hour_usd": "0.31",
    }
    return entry | overrides


def ollama(
    settings: Settings, clock: FakeClock, db: Database, nodes: list[dict[str, Any]]
) -> OllamaProvider:
    configured = settings.model_copy(
        update={"ollama_nodes": json.dumps(nodes), "providers": "ollama"}
    )
    (provider,) = load_providers(ProviderContext(settings=configured, clock=clock, db=db)).values()
    assert isinstance(provider, OllamaProvider)
    return provider


@pytest.fixture
def fakes() -> Iterator[tuple[FakeOllama, str, FakeOllama, str]]:
    one, two = FakeOllama(), FakeOllama()
    with ExitStack() as stack:
        url_one = stack.enter_context(serve(fake_ollama_app(one)))
        url_two = stack.enter_context(serve(fake_ollama_app(two)))
        yield one, url_one, two, url_two


async def test_offers_one_per_reachable_node_priced_exactly(
    settings: Settings, clock: FakeClock, db: Database, fakes: Any
) -> None:
    _one, url_one, _two, url_two = fakes
    provider = ollama(
        settings,
        clock,
        db,
        [
            node("box-1", url_one, price_per_hour_usd="0.31"),
            node("box-2", url_two, price_per_hour_usd=0.123456),  # a JSON number, exact too
            node("box-down", f"http://127.0.0.1:{free_port()}"),
            node("box-a100", url_two, gpu="A100 SXM4", vram_gb=80),
        ],
    )
    offers = await provider.offers(TIERS["starter"])
    assert [(o.offer_id, o.upstream_micros_per_hour) for o in offers] == [
        ("box-1", 310_000),
        ("box-2", 123_456),
    ]
    assert {(o.provider, o.gpu_type, o.gpu_count, o.vram_gb_per_gpu) for o in offers} == {
        ("ollama", "RTX 4090", 1, 24)
    }
    (pro,) = await provider.offers(TIERS["pro"])
    assert (pro.offer_id, pro.gpu_type, pro.vram_gb_per_gpu) == ("box-a100", "A100 80GB", 80)
    health = await provider.health()
    assert health.healthy and "3/4 nodes answer" in (health.detail or "")


async def test_provision_pulls_then_loads_reporting_progress_in_order(
    settings: Settings, clock: FakeClock, db: Database, fakes: Any
) -> None:
    one, url_one, _two, _url_two = fakes
    provider = ollama(settings, clock, db, [node("box-1", url_one)])
    seen: list[tuple[str, str, float | None]] = []

    async def record(session_id: str, phase: str, percent: float | None) -> None:
        seen.append((session_id, phase, percent))

    provider.on_progress = record
    (offer,) = await provider.offers(TIERS["starter"])
    external_id = await provider.provision(offer, session_id="s1", model="llama3.2")
    assert external_id == "box-1"
    assert seen == [
        ("s1", "pulling manifest", None),
        ("s1", "downloading", 0.0),
        ("s1", "downloading", 25.0),
        ("s1", "downloading", 50.0),
        ("s1", "downloading", 75.0),
        ("s1", "downloading", 100.0),
        ("s1", "verifying", None),
        ("s1", "writing manifest", None),
        ("s1", "pulled", None),
        ("s1", "loading", None),
        ("s1", "ready", 100.0),
    ]
    assert [kind for kind, _body in one.requests] == ["pull", "load"]
    assert one.requests[1][1] == {"model": "llama3.2"}
    assert "llama3.2:latest" in one.loaded
    status = await provider.status("box-1")
    assert status is not None and status.state is InstanceState.RUNNING
    assert await provider.status("gone-node") is None


async def test_an_error_mid_pull_is_provider_unavailable(
    settings: Settings, clock: FakeClock, db: Database, fakes: Any
) -> None:
    one, url_one, _two, _url_two = fakes
    one.fail_pull_after = 3
    provider = ollama(settings, clock, db, [node("box-1", url_one)])
    (offer,) = await provider.offers(TIERS["starter"])
    with pytest.raises(ProviderUnavailable, match="connection reset"):
        await provider.provision(offer, session_id="s1", model="llama3.2")
    assert one.loaded == {}
    # the failed launch does not keep the node: it is offered again
    assert [o.offer_id for o in await provider.offers(TIERS["starter"])] == ["box-1"]


async def test_an_unknown_model_fails_the_pull(
    settings: Settings, clock: FakeClock, db: Database, fakes: Any
) -> None:
    _one, url_one, _two, _url_two = fakes
    provider = ollama(settings, clock, db, [node("box-1", url_one)])
    (offer,) = await provider.offers(TIERS["starter"])
    with pytest.raises(ProviderUnavailable, match="file does not exist"):
        await provider.provision(offer, session_id="s1", model="no-such-model")


async def test_a_busy_node_gives_no_offer_and_cannot_be_provisioned(
    settings: Settings, clock: FakeClock, db: Database, fakes: Any
) -> None:
    one, url_one, _two, url_two = fakes
    provider = ollama(settings, clock, db, [node("box-1", url_one), node("box-2", url_two)])
    offers = {o.offer_id: o for o in await provider.offers(TIERS["starter"])}
    await _hold(db, clock, node="box-1", session_id="held1", model="llama3.2")
    assert [o.offer_id for o in await provider.offers(TIERS["starter"])] == ["box-2"]
    with pytest.raises(NoCapacity):
        await provider.provision(offers["box-1"], session_id="s2", model=None)
    (instance,) = await provider.list_instances()
    assert (instance.external_id, instance.name) == ("box-1", "sizzle-held1")
    status = await provider.status("box-1")
    assert status is not None and status.name == "sizzle-held1"
    assert one.requests == []


async def test_terminate_unloads_the_sessions_models(
    settings: Settings, clock: FakeClock, db: Database, fakes: Any
) -> None:
    one, url_one, _two, _url_two = fakes
    provider = ollama(settings, clock, db, [node("box-1", url_one)])
    (offer,) = await provider.offers(TIERS["starter"])
    await provider.provision(offer, session_id="s1", model="llama3.2")
    await _hold(db, clock, node="box-1", session_id="s1", model="llama3.2")
    metrics = await provider.metrics("box-1")
    assert metrics is not None
    assert metrics["models"] == [{"name": "llama3.2:latest", "size_vram_bytes": 2_000}]
    assert metrics["gpus"] is None and "agent" not in metrics  # no agent: no GPU numbers
    await provider.terminate("box-1")
    unloads = [body for kind, body in one.requests if kind == "unload"]
    assert {"model": "llama3.2", "keep_alive": 0} in unloads
    assert {"model": "llama3.2:latest", "keep_alive": 0} in unloads
    assert one.loaded == {}


async def test_terminate_is_silent_when_the_node_is_unreachable(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    provider = ollama(settings, clock, db, [node("box-1", down)])
    await provider.terminate("box-1")
    await provider.terminate("not-configured")
    assert await provider.offers(TIERS["starter"]) == []
    assert not (await provider.health()).healthy


async def test_metrics_include_the_node_agent(
    settings: Settings, clock: FakeClock, db: Database, fakes: Any
) -> None:
    from sizzle.node_agent import create_agent_app

    _one, url_one, _two, _url_two = fakes

    def reader() -> dict[str, Any]:
        return {"driver": None, "gpus": [], "error": "NVIDIA driver not found (NVML unavailable)"}

    with serve(create_agent_app(reader)) as agent_url:
        provider = ollama(settings, clock, db, [node("box-1", url_one, agent_url=agent_url)])
        metrics = await provider.metrics("box-1")
    assert metrics is not None
    assert metrics["models"] == []
    assert metrics["gpus"] == []
    assert metrics["agent"]["error"] == "NVIDIA driver not found (NVML unavailable)"


async def test_client_against_the_fake(fakes: Any) -> None:
    one, url_one, _two, _url_two = fakes
    one.local = {"qwen2.5:7b": 5}
    async with OllamaClient(url_one, node="box-1", timeout=5) as client:
        assert await client.version() == "0.5.1"
        assert [m.name for m in await client.tags()] == ["qwen2.5:7b"]
        with pytest.raises(ProviderUnavailable, match="model 'nope' not found"):
            await client.load("nope")
        await client.load("qwen2.5:7b")
        assert [(m.name, m.size_vram) for m in await client.ps()] == [("qwen2.5:7b", 5)]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("not json", "SIZZLE_OLLAMA_NODES is not valid"),
        ('{"name": "x"}', "SIZZLE_OLLAMA_NODES is not valid"),
        ('[{"name": "x", "url": "http://h"}]', "0.gpu: Field required"),
        (json.dumps([node("x", "ftp://h")]), "0.url"),
        (json.dumps([node("x", "http://h", gpu="Voodoo 2")]), "not a GPU Sizzle rents"),
        (json.dumps([node("x", "http://h", price_per_hour_usd="0.0000001")]), "micro-dollar"),
        (json.dumps([node("x", "http://h", price_per_hour_usd="-1")]), "price_per_hour_usd"),
        (json.dumps([node("x", "http://h"), node("x", "http://g")]), "names a node twice: x"),
        (json.dumps([node("x", "http://h", token="has a space")]), "0.token"),
    ],
)
def test_bad_nodes_setting_is_a_clear_error(
    settings: Settings, clock: FakeClock, db: Database, raw: str, problem: str
) -> None:
    configured = settings.model_copy(update={"ollama_nodes": raw, "providers": "ollama"})
    with pytest.raises(BadRequest, match="SIZZLE_OLLAMA_NODES") as caught:
        load_providers(ProviderContext(settings=configured, clock=clock, db=db))
    assert problem in caught.value.message
    assert "has a space" not in caught.value.message  # a token is never echoed


async def test_a_node_behind_a_token_gets_it_on_every_request(
    settings: Settings, clock: FakeClock, db: Database, fakes: Any
) -> None:
    from sizzle.node_agent import create_agent_app

    one, url_one, _two, _url_two = fakes
    one.token = TOKEN
    seen_by_agent: list[str | None] = []
    agent = create_agent_app(lambda: {"driver": "550.90", "gpus": [], "error": None})

    async def agent_behind_proxy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen_by_agent.append(dict(scope["headers"]).get(b"authorization", b"").decode())
        await agent(scope, receive, send)

    with serve(agent_behind_proxy) as agent_url:
        provider = ollama(
            settings, clock, db, [node("box-1", url_one, token=TOKEN, agent_url=agent_url)]
        )
        (offer,) = await provider.offers(TIERS["starter"])  # the probe carried it
        assert await provider.provision(offer, session_id="s1", model="llama3.2") == "box-1"
        metrics = await provider.metrics("box-1")
    assert [kind for kind, _body in one.requests] == ["pull", "load"]
    assert one.refused == 0
    assert metrics is not None and metrics["error"] is None
    assert seen_by_agent == [f"Bearer {TOKEN}"]
    assert provider.chat_headers("box-1") == {"Authorization": f"Bearer {TOKEN}"}
    assert TOKEN not in repr(provider.nodes["box-1"])


async def test_a_node_refusing_its_token_fails_alone(
    settings: Settings, clock: FakeClock, db: Database, fakes: Any
) -> None:
    one, url_one, _two, url_two = fakes
    one.token = TOKEN
    provider = ollama(
        settings,
        clock,
        db,
        [node("box-1", url_one, token="an-old-token-000"), node("box-2", url_two)],
    )
    # the probe finds it refused: only the other node offers
    (offer,) = await provider.offers(TIERS["starter"])
    assert offer.offer_id == "box-2"
    assert one.refused >= 1
    # asked all the same, it is this node's failure (not a refused provider key, which would
    # switch every node off), and it says what to check
    with pytest.raises(NoCapacity, match="box-1 refused Sizzle \\(HTTP 401\\): check the"):
        await provider.provision(
            dataclasses.replace(offer, offer_id="box-1"), session_id="s1", model="llama3.2"
        )


async def _hold(
    db: Database, clock: FakeClock, *, node: str, session_id: str, model: str | None
) -> None:
    """Record, as the orchestrator does, that a session holds `node`."""
    user = await make_user(db, now=clock.now())
    async with db.transaction() as tx:
        tx.add(
            GpuSession(
                id=session_id,
                user_id=user.id,
                tier="starter",
                model=model,
                status="running",
                price_micros_per_minute=150_000,
                created_at=clock.now(),
            )
        )
        await tx.flush()
        tx.add(
            ProviderInstance(
                session_id=session_id,
                provider="ollama",
                external_id=node,
                name=f"sizzle-{session_id}",
                gpu_type="RTX 4090",
                gpu_count=1,
                upstream_micros_per_hour=310_000,
                created_at=clock.now(),
            )
        )


async def test_a_node_stays_taken_until_its_launch_is_recorded(
    settings: Settings, clock: FakeClock, db: Database, fakes: Any
) -> None:
    _one, url_one, _two, _url_two = fakes
    provider = ollama(settings, clock, db, [node("box-1", url_one)])
    (offer,) = await provider.offers(TIERS["starter"])
    await provider.provision(offer, session_id="s1", model=None)
    # provision returned; the orchestrator has not written its ProviderInstance row yet
    assert await provider.offers(TIERS["starter"]) == []
    with pytest.raises(NoCapacity):
        await provider.provision(offer, session_id="s2", model=None)
    assert (await provider.status("box-1")).name == "sizzle-s1"  # type: ignore[union-attr]
    await provider.terminate("box-1")  # a discarded launch frees the node
    assert [o.offer_id for o in await provider.offers(TIERS["starter"])] == ["box-1"]
