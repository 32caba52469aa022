"""Benchmark: offer ranking and concurrent offer gathering in the orchestrator.

    python bench/orchestrator.py

Prints one JSON line:
- `rank_10000_offers_ms`: best of 20 runs of ranking 10,000 offers (goal: <= 20 ms), with
  `sort_floor_ms`, a plain `sorted` of the same offers by price alone;
- `gather_seconds_one_slow`: offers from three providers, one answering after 2 s (goal:
  close to 2 s, not the sum of the three);
- `gather_seconds_one_hanging`: the same with one provider that never answers, bounded by
  the per-provider timeout (`timeout_seconds`).

The providers here are in-process stand-ins that wait with asyncio.sleep: what is measured is
the orchestrator's own concurrency and timeout handling, not a provider's network.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime
from decimal import Decimal

from sizzle.clock import FakeClock
from sizzle.domain.ranking import rank_offers
from sizzle.domain.tiers import TIERS, Tier
from sizzle.providers.base import Instance, Offer, Provider, ProviderHealth
from sizzle.services.orchestrator import Orchestrator

TIMEOUT_SECONDS = 3.0


class SleepyProvider(Provider):
    def __init__(self, name: str, delay: float) -> None:  # no context: nothing is provisioned
        self.name = name  # type: ignore[misc]
        self.label = name  # type: ignore[misc]
        self.delay = delay

    async def health(self) -> ProviderHealth:
        return ProviderHealth(True)

    async def offers(self, tier: Tier) -> list[Offer]:
        await asyncio.sleep(self.delay)
        return [Offer(self.name, f"{self.name}-1", "RTX 4090", 1, 24, 400_000)]

    async def provision(self, offer: Offer, *, session_id: str, model: str | None) -> str:
        raise NotImplementedError

    async def status(self, external_id: str) -> Instance | None:
        return None

    async def terminate(self, external_id: str) -> None:
        return None

    async def list_instances(self) -> list[Instance]:
        return []


def time_ranking() -> tuple[float, float]:
    rng = random.Random(7)
    offers = [
        Offer(
            rng.choice(["vast", "runpod", "lambda", "ollama"]),
            str(i),
            "RTX 4090",
            1,
            24,
            rng.randrange(200_000, 2_000_000),
            rng.random(),
        )
        for i in range(10_000)
    ]
    multipliers = {"vast": Decimal("1.1"), "runpod": Decimal("1.0")}
    best = floor = float("inf")
    for _ in range(20):
        began = time.perf_counter()
        rank_offers(offers, multipliers)
        best = min(best, time.perf_counter() - began)
        began = time.perf_counter()
        sorted(offers, key=lambda o: o.upstream_micros_per_hour)
        floor = min(floor, time.perf_counter() - began)
    return best * 1000, floor * 1000


async def time_gathering(delays: dict[str, float]) -> float:
    providers = {name: SleepyProvider(name, delay) for name, delay in delays.items()}
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    orchestrator = Orchestrator(
        providers,  # type: ignore[arg-type]
        clock=clock,
        offer_timeout_seconds=TIMEOUT_SECONDS,
    )
    began = time.perf_counter()
    await orchestrator.offers_for(TIERS["starter"], fresh=True)
    return time.perf_counter() - began


def main() -> None:
    rank_ms, floor_ms = time_ranking()
    slow = asyncio.run(time_gathering({"a": 0.05, "b": 0.1, "slow": 2.0}))
    hanging = asyncio.run(time_gathering({"a": 0.05, "b": 0.1, "hangs": 3600}))
    print(
        json.dumps(
            {
                "rank_10000_offers_ms": round(rank_ms, 2),
                "sort_floor_ms": round(floor_ms, 2),
                "gather_seconds_one_slow": round(slow, 3),
                "gather_seconds_one_hanging": round(hanging, 3),
                "timeout_seconds": TIMEOUT_SECONDS,
            }
        )
    )


if __name__ == "__main__":
    main()
