"""The orchestrator, first cut: gather offers from every enabled provider, cheapest first."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from sizzle.domain.tiers import Tier, offer_meets_tier
from sizzle.errors import NoCapacity, SizzleError
from sizzle.providers.base import Offer, Provider

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Launch:
    offer: Offer
    external_id: str


class Orchestrator:
    """Knows providers only through their interface."""

    def __init__(
        self, providers: dict[str, Provider], *, offer_timeout_seconds: float = 10
    ) -> None:
        self.providers = providers
        self.offer_timeout_seconds = offer_timeout_seconds

    async def offers_for(self, tier: Tier) -> list[Offer]:
        """Offers that meet `tier` from every provider, cheapest upstream first."""
        results = await asyncio.gather(
            *(self._offers_from(provider, tier) for provider in self.providers.values())
        )
        offers = [
            offer
            for batch in results
            for offer in batch
            if offer_meets_tier(
                tier,
                gpu_type=offer.gpu_type,
                gpu_count=offer.gpu_count,
                vram_gb_per_gpu=offer.vram_gb_per_gpu,
            )
        ]
        return sorted(offers, key=lambda o: (o.upstream_micros_per_hour, -o.reliability))

    async def launch(self, tier: Tier, *, session_id: str, model: str | None) -> Launch:
        """Provision the best offer that accepts; NoCapacity when none does."""
        reasons: list[str] = []
        for offer in await self.offers_for(tier):
            provider = self.providers[offer.provider]
            try:
                external_id = await provider.provision(offer, session_id=session_id, model=model)
            except SizzleError as exc:
                log.info(
                    "launch.refused",
                    session_id=session_id,
                    provider=offer.provider,
                    offer=offer.offer_id,
                    error=exc.message,
                )
                reasons.append(f"{offer.provider}: {exc.message}")
                continue
            return Launch(offer=offer, external_id=external_id)
        raise NoCapacity(
            "no GPU of this tier is free right now: "
            + ("; ".join(reasons) or "no provider has an offer")
        )

    async def _offers_from(self, provider: Provider, tier: Tier) -> list[Offer]:
        try:
            return await asyncio.wait_for(provider.offers(tier), self.offer_timeout_seconds)
        except (TimeoutError, SizzleError) as exc:
            log.warning("offers.failed", provider=provider.name, error=str(exc))
            return []
