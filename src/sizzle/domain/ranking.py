"""Offer ranking: cheapest effective upstream price first, then the more reliable. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from sizzle.providers.base import Offer


def rank_offers(
    offers: Iterable[Offer], cost_multipliers: Mapping[str, Decimal] | None = None
) -> list[Offer]:
    """Offers ordered by upstream price x the provider's cost multiplier, then reliability."""
    multipliers = cost_multipliers or {}

    def key(offer: Offer) -> tuple[Decimal, float, str, str]:
        price = offer.upstream_micros_per_hour * multipliers.get(offer.provider, Decimal(1))
        return (price, -offer.reliability, offer.provider, offer.offer_id)

    return sorted(offers, key=key)
