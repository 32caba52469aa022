"""Offer ranking: cheapest effective upstream price first, then the more reliable. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from sizzle.providers.base import Offer


def rank_offers(
    offers: Iterable[Offer], cost_multipliers: Mapping[str, Decimal] | None = None
) -> list[Offer]:
    """Offers ordered by upstream price x the provider's cost multiplier, then reliability."""
    # Integer parts-per-million: exact for any multiplier given to six decimals, and far
    # cheaper per comparison than Decimal arithmetic.
    ppm = {name: int(m * 1_000_000) for name, m in (cost_multipliers or {}).items()}

    def key(offer: Offer) -> tuple[int, float, str, str]:
        weighted = offer.upstream_micros_per_hour * ppm.get(offer.provider, 1_000_000)
        return (weighted, -offer.reliability, offer.provider, offer.offer_id)

    return sorted(offers, key=key)
