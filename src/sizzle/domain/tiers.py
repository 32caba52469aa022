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
            good_for="Chat and coding models up to about 30B parameters, image generation.",
        ),
        Tier(
            name="pro",
            gpu_types=("A100 40GB", "A100 80GB"),
            min_gpus=1,
            max_gpus=1,
            min_vram_gb=40,
            price_micros_per_minute=usd_to_micros("0.45"),
            good_for="70B models in 4-bit, long contexts, fine-tuning small models.",
        ),
        Tier(
            name="beast",
            gpu_types=("H100 80GB",),
            min_gpus=1,
            max_gpus=8,
            min_vram_gb=80,
            price_micros_per_minute=usd_to_micros("1.50"),
            good_for="The strongest open models at full speed, serious fine-tuning.",
        ),
        Tier(
            name="ultra",
            gpu_types=("B200", "B300"),
            min_gpus=8,
            max_gpus=8,
            min_vram_gb=192,
            price_micros_per_minute=usd_to_micros("4.00"),
            good_for="Frontier-size open models and multi-GPU training.",
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
