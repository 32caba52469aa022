"""Tiers and what can be had now."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from sizzle.api.deps import StateDep
from sizzle.api.schemas import AvailabilityOut, TierOut, usd
from sizzle.domain.tiers import TIERS

router = APIRouter(prefix="/api/v1", tags=["catalog"])


@router.get("/tiers", response_model=list[TierOut])
async def list_tiers() -> list[TierOut]:
    return [
        TierOut(
            name=tier.name,
            gpu_types=list(tier.gpu_types),
            min_gpus=tier.min_gpus,
            max_gpus=tier.max_gpus,
            min_vram_gb=tier.min_vram_gb,
            price_per_minute_usd=usd(tier.price_micros_per_minute),
            price_per_hour_usd=usd(tier.price_micros_per_minute * 60),
            good_for=tier.good_for,
        )
        for tier in TIERS.values()
    ]


@router.get("/availability", response_model=list[AvailabilityOut])
async def availability(state: StateDep) -> list[AvailabilityOut]:
    tiers = list(TIERS.values())
    offers = await asyncio.gather(*(state.orchestrator.offers_for(tier) for tier in tiers))
    return [
        AvailabilityOut(
            tier=tier.name,
            available=bool(found),
            offers=len(found),
            from_price_per_minute_usd=usd(tier.price_micros_per_minute),
        )
        for tier, found in zip(tiers, offers, strict=True)
    ]
