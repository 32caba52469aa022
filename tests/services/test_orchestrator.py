"""The orchestrator's ranking, failover, breaker and cache, over in-process providers that
implement the plugin interface (the real plugins are tested against fake servers)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from sizzle.clock import FakeClock
from sizzle.domain.tiers import TIERS
from sizzle.errors import BadCredentials, NoCapacity, ProviderUnavailable
from sizzle.providers.base import Instance, Offer, Provider, ProviderHealth
from sizzle.services.breaker import BreakerState
from sizzle.services.orchestrator import LaunchFailed, Orchestrator

STARTER = TIERS["starter"]


class ScriptedProvider(Provider):
    """Offers what it is given; `refuse` maps offer ids to the error provisioning raises."""

    def __init__(self, name: str, prices: list[int], *, delay: float = 0) -> None:
        self.name = name  # type: ignore[misc]
        self.label = name  # type: ignore[misc]
        self.prices = prices
        self.delay = delay
        self.refuse: dict[str, Exception] = {}
        self.offer_error: Exception | None = None
        self.provisioned: list[str] = []
        self.boots: list[object] = []  # the Boot each provision was given
        self.offer_calls = 0

    async def health(self) -> ProviderHealth:
        return ProviderHealth(True)

    async def offers(self, tier):  # type: ignore[no-untyped-def]
        self.offer_calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.offer_error:
            raise self.offer_error
        return [
            Offer(self.name, f"{self.name}-{i}", "RTX 4090", 1, 24, price)
            for i, price in enumerate(self.prices)
        ]

    async def provision(self, offer, *, session_id, model, boot=None):  # type: ignore[no-untyped-def]
        if offer.offer_id in self.refuse:
            raise self.refuse[offer.offer_id]
        self.provisioned.append(offer.offer_id)
        self.boots.append(boot)
        return f"instance-{offer.offer_id}"

    async def status(self, external_id):  # type: ignore[no-untyped-def]
        return None

    async def terminate(self, external_id):  # type: ignore[no-untyped-def]
        return None

    async def list_instances(self) -> list[Instance]:
        return []


def orchestrate(clock: FakeClock, *providers: ScriptedProvider, **kwargs: object) -> Orchestrator:
    return Orchestrator({p.name: p for p in providers}, clock=clock, **kwargs)  # type: ignore[arg-type]


async def test_offers_are_ranked_by_price_times_the_providers_multiplier(clock: FakeClock) -> None:
    cheap, dear = ScriptedProvider("a", [100]), ScriptedProvider("b", [110])
    plain = await orchestrate(clock, cheap, dear).offers_for(STARTER)
    assert [o.provider for o in plain] == ["a", "b"]
    weighted = await orchestrate(
        clock, cheap, dear, cost_multipliers={"a": Decimal("1.2")}
    ).offers_for(STARTER)
    assert [o.provider for o in weighted] == ["b", "a"]


async def test_the_cheapest_offer_refusing_fails_over_to_the_next(clock: FakeClock) -> None:
    a, b = ScriptedProvider("a", [100]), ScriptedProvider("b", [200])
    a.refuse["a-0"] = NoCapacity("offer gone")
    launch = await orchestrate(clock, a, b).launch(STARTER, session_id="s", model=None)
    assert launch.offer.provider == "b"
    assert [(t.offer.provider, t.outcome, t.error) for t in launch.attempts] == [
        ("a", "no_capacity", "offer gone"),
        ("b", "launched", None),
    ]


async def test_bad_credentials_switch_the_provider_off(clock: FakeClock) -> None:
    a, b = ScriptedProvider("a", [100, 101]), ScriptedProvider("b", [200])
    a.refuse["a-0"] = BadCredentials("a refused the API key")
    orchestrator = orchestrate(clock, a, b)
    launch = await orchestrator.launch(STARTER, session_id="s", model=None)
    assert launch.offer.provider == "b"  # a's second offer is not tried
    assert orchestrator.status["a"].disabled_reason == "a refused the API key"
    assert [o.provider for o in await orchestrator.offers_for(STARTER, fresh=True)] == ["b"]


async def test_a_hanging_provider_is_bounded_by_its_timeout(clock: FakeClock) -> None:
    slow, fast = ScriptedProvider("slow", [1], delay=30), ScriptedProvider("fast", [100])
    orchestrator = orchestrate(clock, slow, fast, offer_timeout_seconds=0.05)
    offers = await asyncio.wait_for(orchestrator.offers_for(STARTER), 5)
    assert [o.provider for o in offers] == ["fast"]
    assert "no offers within" in (orchestrator.status["slow"].last_error or "")


async def test_repeated_failures_open_the_breaker_until_it_cools_down(clock: FakeClock) -> None:
    flaky, steady = ScriptedProvider("flaky", [1]), ScriptedProvider("steady", [100])
    flaky.offer_error = ProviderUnavailable("flaky: HTTP 502")
    orchestrator = orchestrate(clock, flaky, steady)
    for _ in range(3):
        await orchestrator.offers_for(STARTER, fresh=True)
    assert orchestrator.status["flaky"].state(clock.now()) is BreakerState.OPEN
    calls = flaky.offer_calls
    await orchestrator.offers_for(STARTER, fresh=True)
    assert flaky.offer_calls == calls  # not asked while open
    clock.advance(31)
    flaky.offer_error = None
    assert [o.provider for o in await orchestrator.offers_for(STARTER, fresh=True)] == [
        "flaky",
        "steady",
    ]
    assert orchestrator.status["flaky"].state(clock.now()) is BreakerState.CLOSED


async def test_at_most_max_offers_are_tried(clock: FakeClock) -> None:
    a = ScriptedProvider("a", list(range(100, 105)))
    for i in range(5):
        a.refuse[f"a-{i}"] = NoCapacity("gone")
    with pytest.raises(LaunchFailed) as failed:
        await orchestrate(clock, a, max_offers_tried=3).launch(STARTER, session_id="s", model=None)
    assert len(failed.value.attempts) == 3
    assert failed.value.status_code == 503


async def test_offers_are_cached_briefly(clock: FakeClock) -> None:
    a = ScriptedProvider("a", [100])
    orchestrator = orchestrate(clock, a, offer_cache_seconds=15)
    await orchestrator.offers_for(STARTER)
    await orchestrator.offers_for(STARTER)
    assert a.offer_calls == 1
    clock.advance(16)
    await orchestrator.offers_for(STARTER)
    assert a.offer_calls == 2


async def test_offers_that_do_not_meet_the_tier_are_dropped(clock: FakeClock) -> None:
    a = ScriptedProvider("a", [100])
    assert await orchestrate(clock, a).offers_for(TIERS["pro"]) == []


class BareVmProvider(ScriptedProvider):
    """Like Lambda today: rents the GPU, starts no model server on it."""

    cannot_serve_models = "its instances start no model server"


async def test_a_session_with_a_model_passes_over_a_provider_that_cannot_serve_one(
    clock: FakeClock,
) -> None:
    bare, served = BareVmProvider("bare", [50, 60]), ScriptedProvider("served", [100])
    orchestrator = orchestrate(clock, bare, served)
    launch = await orchestrator.launch(STARTER, session_id="s1", model="llama3.1:8b")
    assert launch.offer.provider == "served"
    assert bare.provisioned == []
    # one line for the provider passed over (its best offer), then the launch
    assert [(a.offer.offer_id, a.outcome, a.error) for a in launch.attempts] == [
        ("bare-0", "cannot_serve_model", "its instances start no model server"),
        ("served-0", "launched", None),
    ]
    # a GPU-only session takes the cheapest, as ever
    gpu_only = await orchestrator.launch(STARTER, session_id="s2", model=None)
    assert gpu_only.offer.offer_id == "bare-0"
    assert [a.outcome for a in gpu_only.attempts] == ["launched"]


async def test_a_model_session_with_only_bare_offers_fails_and_says_why(clock: FakeClock) -> None:
    bare = BareVmProvider("bare", [50])
    with pytest.raises(LaunchFailed) as failed:
        await orchestrate(clock, bare).launch(STARTER, session_id="s1", model="llama3.1:8b")
    assert "its instances start no model server" in failed.value.message
    assert [a.outcome for a in failed.value.attempts] == ["cannot_serve_model"]
    assert bare.provisioned == []
