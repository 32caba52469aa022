"""The orchestrator: the cheapest healthy capacity for a tier, with failover.

Offers are gathered from every enabled provider at once, each bounded by its own timeout,
and cached briefly per tier. A launch tries the ranked offers in order, up to
`max_offers_tried` and within a total deadline, and records every attempt: no capacity moves
on to the next offer, bad credentials switch the provider off, timeouts and 5xx answers
count toward the provider's circuit breaker. It knows providers only through their interface.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import structlog

from sizzle.clock import Clock
from sizzle.domain.ranking import rank_offers
from sizzle.domain.tiers import Tier, offer_meets_tier
from sizzle.errors import BadCredentials, NoCapacity, ProviderUnavailable, SizzleError
from sizzle.providers.base import Boot, Offer, Provider
from sizzle.services.breaker import ProviderStatus

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Attempt:
    """One try of one offer during a launch, and how it ended."""

    offer: Offer
    # launched | no_capacity | provider_down | bad_credentials | bad_request | cannot_serve_model
    outcome: str
    error: str | None
    at: datetime


@dataclass(frozen=True)
class Launch:
    offer: Offer
    external_id: str
    attempts: list[Attempt] = field(default_factory=list)


class LaunchFailed(NoCapacity):
    """No offer could be launched; `attempts` says what was tried and why each failed."""

    def __init__(self, message: str, attempts: list[Attempt]) -> None:
        super().__init__(message)
        self.attempts = attempts


class Orchestrator:
    def __init__(
        self,
        providers: dict[str, Provider],
        *,
        clock: Clock,
        offer_timeout_seconds: float = 10,
        cost_multipliers: Mapping[str, Decimal] | None = None,
        max_offers_tried: int = 10,
        launch_deadline_seconds: float = 600,
        offer_cache_seconds: float = 15,
    ) -> None:
        self.providers = providers
        self.clock = clock
        self.offer_timeout_seconds = offer_timeout_seconds
        self.cost_multipliers = dict(cost_multipliers or {})
        self.max_offers_tried = max_offers_tried
        self.launch_deadline = timedelta(seconds=launch_deadline_seconds)
        self.offer_cache = timedelta(seconds=offer_cache_seconds)
        self.status = {name: ProviderStatus(name) for name in providers}
        self._cache: dict[str, tuple[datetime, list[Offer]]] = {}

    async def offers_for(self, tier: Tier, *, fresh: bool = False) -> list[Offer]:
        """Offers that meet `tier` from every usable provider, best first (cached briefly)."""
        now = self.clock.now()
        cached = self._cache.get(tier.name)
        if cached and not fresh and now - cached[0] < self.offer_cache:
            return cached[1]
        usable = [p for name, p in self.providers.items() if self.status[name].usable(now)]
        batches = await asyncio.gather(*(self._offers_from(p, tier) for p in usable))
        offers = rank_offers(
            (
                offer
                for batch in batches
                for offer in batch
                if offer_meets_tier(
                    tier,
                    gpu_type=offer.gpu_type,
                    gpu_count=offer.gpu_count,
                    vram_gb_per_gpu=offer.vram_gb_per_gpu,
                )
            ),
            self.cost_multipliers,
        )
        self._cache[tier.name] = (now, offers)
        return offers

    async def launch(
        self,
        tier: Tier,
        *,
        session_id: str,
        model: str | None,
        skip: frozenset[str] = frozenset(),
        boot: Boot | None = None,
    ) -> Launch:
        """Provision the best offer that accepts; LaunchFailed (with the attempts) if none does.

        `skip` holds "provider:offer_id" keys already tried for this session. With a `model`,
        a provider that cannot serve one is passed over, and its best offer recorded as an
        attempt that says why.
        """
        started = self.clock.now()
        offers = await self.offers_for(tier, fresh=True)
        attempts = self._passed_over(offers) if model is not None else []
        tried = 0
        for offer in offers:
            if tried >= self.max_offers_tried:
                break
            if self.clock.now() - started >= self.launch_deadline:
                break
            if f"{offer.provider}:{offer.offer_id}" in skip:
                continue
            if not self.status[offer.provider].usable(self.clock.now()):
                continue
            if model is not None and self.providers[offer.provider].cannot_serve_models:
                continue
            tried += 1
            try:
                external_id = await self.providers[offer.provider].provision(
                    offer, session_id=session_id, model=model, boot=boot
                )
            except SizzleError as exc:
                attempts.append(self._failed_attempt(offer, exc))
                log.info(
                    "launch.attempt_failed",
                    session_id=session_id,
                    provider=offer.provider,
                    offer=offer.offer_id,
                    error=exc.message,
                )
                continue
            self.status[offer.provider].record_success()
            attempts.append(Attempt(offer, "launched", None, self.clock.now()))
            self._cache.pop(tier.name, None)  # that capacity is taken now
            return Launch(offer=offer, external_id=external_id, attempts=attempts)
        self._cache.pop(tier.name, None)
        reasons = "; ".join(f"{a.offer.provider}: {a.error}" for a in attempts)
        raise LaunchFailed(
            f"no {tier.name} GPU could be had right now"
            + (f" ({reasons})" if reasons else ": no provider has an offer"),
            attempts,
        )

    def _passed_over(self, offers: list[Offer]) -> list[Attempt]:
        """For a session with a model: the best offer of each provider that cannot serve one,
        as an attempt that says why it was not tried."""
        attempts: list[Attempt] = []
        seen: set[str] = set()
        for offer in offers:
            why = self.providers[offer.provider].cannot_serve_models
            if why and offer.provider not in seen:
                seen.add(offer.provider)
                attempts.append(Attempt(offer, "cannot_serve_model", why, self.clock.now()))
        return attempts

    def _failed_attempt(self, offer: Offer, exc: SizzleError) -> Attempt:
        now = self.clock.now()
        status = self.status[offer.provider]
        if isinstance(exc, BadCredentials):
            status.disable(exc.message)
            outcome = "bad_credentials"
        elif isinstance(exc, NoCapacity):
            outcome = "no_capacity"
        elif isinstance(exc, ProviderUnavailable) and exc.code == "provider_bad_request":
            outcome = "bad_request"
        else:
            status.record_failure(exc.message, now=now)
            outcome = "provider_down"
        return Attempt(offer, outcome, exc.message, now)

    async def _offers_from(self, provider: Provider, tier: Tier) -> list[Offer]:
        status = self.status[provider.name]
        began = time.perf_counter()
        try:
            offers = await asyncio.wait_for(provider.offers(tier), self.offer_timeout_seconds)
        except TimeoutError:
            status.record_failure(
                f"no offers within {self.offer_timeout_seconds:g} s", now=self.clock.now()
            )
            return []
        except BadCredentials as exc:
            status.disable(exc.message)
            return []
        except SizzleError as exc:
            status.record_failure(exc.message, now=self.clock.now())
            return []
        status.record_success(latency_ms=(time.perf_counter() - began) * 1000)
        status.offer_count = len(offers)
        return offers
