"""What every page may say about tiers, plans and demo mode (Jinja globals, see render.py)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from sizzle.domain.tiers import PLANS
from sizzle.services.tier_models import tier_models

DEMO = "demo"


def demo_mode(request: Request) -> str | None:
    """How demo mode is on: "only" (every GPU here is the demo's simulated one), "also" (the
    demo provider beside real ones), or None (off)."""
    state: Any = getattr(request.app.state, "sizzle", None)
    providers = getattr(state, "providers", None) or {}
    if DEMO not in providers:
        return None
    return "only" if len(providers) == 1 else "also"


def plans_with(tier_name: str) -> list[str]:
    """The plans that include a tier, cheapest first, capitalized: ["Pro", "Enterprise"]."""
    return [p.name.capitalize() for p in PLANS.values() if tier_name in p.allowed_tiers]


def in_every_plan(tier_name: str) -> bool:
    return all(tier_name in plan.allowed_tiers for plan in PLANS.values())


def tier_summary(tier_name: str) -> str:
    """What the tier runs, from the model library (services/tier_models.py)."""
    return tier_models(tier_name).summary


GLOBALS = {
    "demo_mode": demo_mode,
    "plans_with": plans_with,
    "in_every_plan": in_every_plan,
    "tier_summary": tier_summary,
}
