"""Tiers (what a user buys) and plans (what a user may buy). Config tables, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from sizzle.domain.money import usd_to_micros


@dataclass(frozen=True)
class Tier:
    name: str
    gpu_types: tuple[str, ...]
    min_gpus: int
    max_gpus: int
    min_vram_gb: int
    price_micros_per_minute: int
    # What a newcomer can do with it, in a line. Only what Sizzle does (it serves models of
    # the library for chat; it does not train or generate images), and only models the
    # library says fit: tests/services/test_tier_copy.py fails on anything else.
    good_for: str


@dataclass(frozen=True)
class Plan:
    name: str
    allowed_tiers: frozenset[str]
    max_concurrent_sessions: int


TIERS: dict[str, Tier] = {
    tier.name: tier
    for tier in (
        Tier(
            name="starter",
            gpu_types=("RTX 4090", "RTX 5090"),
            min_gpus=1,
            max_gpus=1,
            min_vram_gb=24,
            price_micros_per_minute=usd_to_micros("0.15"),
            good_for="Everyday chat, coding, reasoning and image-reading models.",
        ),
        Tier(
            name="pro",
            gpu_types=("A100 40GB", "A100 80GB"),
            min_gpus=1,
            max_gpus=1,
            min_vram_gb=40,
            price_micros_per_minute=usd_to_micros("0.45"),
            good_for="Mid-size models around 30B, such as Qwen3 32B, with room for longer chats.",
        ),
        Tier(
            name="beast",
            gpu_types=("H100 80GB",),
            min_gpus=1,
            max_gpus=8,
            min_vram_gb=80,
            price_micros_per_minute=usd_to_micros("1.50"),
            good_for="70B-class models such as Llama 3.3 70B, and gpt-oss 120B.",
        ),
        Tier(
            name="ultra",
            gpu_types=("B200", "B300"),
            min_gpus=8,
            max_gpus=8,
            min_vram_gb=192,
            price_micros_per_minute=usd_to_micros("4.00"),
            good_for="The largest open models, such as DeepSeek-R1 671B, across eight GPUs.",
        ),
    )
}

PLANS: dict[str, Plan] = {
    plan.name: plan
    for plan in (
        Plan("free", frozenset({"starter", "pro", "beast"}), 1),
        Plan("starter", frozenset({"starter", "pro", "beast"}), 2),
        Plan("pro", frozenset(TIERS), 4),
        Plan("enterprise", frozenset(TIERS), 16),
    )
}


def offer_meets_tier(tier: Tier, *, gpu_type: str, gpu_count: int, vram_gb_per_gpu: int) -> bool:
    """An offer meets a tier by GPU type, count and total VRAM."""
    return (
        gpu_type in tier.gpu_types
        and tier.min_gpus <= gpu_count <= tier.max_gpus
        and gpu_count * vram_gb_per_gpu >= tier.min_vram_gb
    )
