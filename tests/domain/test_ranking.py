"""Offer ranking is pure: price x multiplier, then reliability, then a stable tie-break."""

from __future__ import annotations

from decimal import Decimal

from sizzle.domain.ranking import rank_offers
from sizzle.providers.base import Offer


def offer(provider: str, price: int, reliability: float = 1.0, offer_id: str = "x") -> Offer:
    return Offer(provider, offer_id, "RTX 4090", 1, 24, price, reliability)


def test_cheapest_first() -> None:
    ranked = rank_offers([offer("a", 300), offer("b", 100), offer("c", 200)])
    assert [o.provider for o in ranked] == ["b", "c", "a"]


def test_equal_price_prefers_the_more_reliable() -> None:
    ranked = rank_offers([offer("a", 100, 0.9), offer("b", 100, 0.99)])
    assert [o.provider for o in ranked] == ["b", "a"]


def test_multiplier_weighs_a_provider() -> None:
    ranked = rank_offers([offer("a", 100), offer("b", 115)], {"a": Decimal("1.2")})
    assert [o.provider for o in ranked] == ["b", "a"]
