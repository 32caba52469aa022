"""Tiers (what an offer must have) and plans (what a user may rent), as configured by default."""

from __future__ import annotations

import pytest

from sizzle.domain.money import usd_to_micros
from sizzle.domain.tiers import PLANS, TIERS, offer_meets_tier


@pytest.mark.parametrize(
    ("tier", "gpu_type", "gpu_count", "vram_gb", "meets"),
    [
        ("starter", "RTX 4090", 1, 24, True),
        ("starter", "RTX 5090", 1, 32, True),
        ("starter", "RTX 4090", 1, 16, False),  # not enough memory
        ("starter", "RTX 4090", 2, 24, False),  # more GPUs than the tier sells
        ("starter", "A100 40GB", 1, 40, False),  # not one of the tier's GPUs
        ("pro", "A100 40GB", 1, 40, True),
        ("pro", "A100 80GB", 1, 80, True),
        ("pro", "H100 80GB", 1, 80, False),
        ("beast", "H100 80GB", 1, 80, True),
        ("beast", "H100 80GB", 8, 80, True),
        ("beast", "H100 80GB", 9, 80, False),
        ("beast", "H100 80GB", 0, 80, False),
        ("ultra", "B200", 8, 180, True),
        ("ultra", "B300", 8, 288, True),
        ("ultra", "B200", 7, 180, False),  # ultra is always eight GPUs
        ("ultra", "B200", 8, 23, False),  # 8 x 23 GB is under 192 GB in all
        ("ultra", "B200", 8, 24, True),  # total VRAM counts, not per GPU
    ],
)
def test_offer_meets_tier_by_type_count_and_total_vram(
    tier: str, gpu_type: str, gpu_count: int, vram_gb: int, meets: bool
) -> None:
    assert (
        offer_meets_tier(
            TIERS[tier], gpu_type=gpu_type, gpu_count=gpu_count, vram_gb_per_gpu=vram_gb
        )
        is meets
    )


@pytest.mark.parametrize(
    ("tier", "usd_per_minute"),
    [("starter", "0.15"), ("pro", "0.45"), ("beast", "1.50"), ("ultra", "4.00")],
)
def test_tier_prices_default_to_the_design(tier: str, usd_per_minute: str) -> None:
    assert TIERS[tier].price_micros_per_minute == usd_to_micros(usd_per_minute)


@pytest.mark.parametrize(
    ("plan", "tiers", "max_sessions"),
    [
        ("free", {"starter", "pro", "beast"}, 1),
        ("starter", {"starter", "pro", "beast"}, 2),
        ("pro", {"starter", "pro", "beast", "ultra"}, 4),
        ("enterprise", {"starter", "pro", "beast", "ultra"}, 16),
    ],
)
def test_plan_defaults(plan: str, tiers: set[str], max_sessions: int) -> None:
    assert PLANS[plan].allowed_tiers == tiers
    assert PLANS[plan].max_concurrent_sessions == max_sessions


def test_there_are_exactly_four_plans() -> None:
    assert set(PLANS) == {"free", "starter", "pro", "enterprise"}
