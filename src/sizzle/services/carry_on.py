"""Carrying a saved chat on: in a running session of the user's that runs its model, or in a
new session launched with that model on the cheapest tier it fits (the launch wizard opens
with both chosen, and the new session's page opens the chat)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import GpuSession
from sizzle.domain.lifecycle import SessionStatus
from sizzle.domain.tiers import TIERS, Tier
from sizzle.errors import SizzleError
from sizzle.services.model_library import choose_session_model, model_name
from sizzle.services.workspace import DEMO_PROVIDER, model_names


@dataclass(frozen=True)
class CarryOn:
    """Where the chat can go on: a link and the words for it; None: nowhere (no model)."""

    href: str
    label: str
    running: bool


def cheapest_fitting_tier(model: str) -> Tier | None:
    """The cheapest tier the model fits, by the library's fit rules (None: none fits)."""
    for tier in sorted(TIERS.values(), key=lambda t: t.price_micros_per_minute):
        try:
            choose_session_model(model, tier)
        except SizzleError:
            continue
        return tier
    return None


async def carry_on(
    tx: AsyncSession, *, user_id: str, chat_id: str, model: str | None
) -> CarryOn | None:
    """Where the user can carry their chat `chat_id` (held with `model`) on now."""
    if not model:
        return None
    running = await tx.scalar(
        select(GpuSession.id)
        .where(
            GpuSession.user_id == user_id,
            GpuSession.status == SessionStatus.ACTIVE.value,
            GpuSession.model.in_(model_names(model)),
            GpuSession.provider != DEMO_PROVIDER,
        )
        .order_by(GpuSession.created_at.desc())
        .limit(1)
    )
    name = model_name(model)
    if running:
        href = f"/sessions/{running}?{urlencode({'chat': chat_id})}"
        return CarryOn(href, f"Carry on in your running {name} session", running=True)
    tier = cheapest_fitting_tier(model)
    if tier is None:
        return None
    query = {"step": "confirm", "tier": tier.name, "model": model, "chat": chat_id}
    return CarryOn(
        f"/launch?{urlencode(query)}", f"Carry on: launch {name} on a {tier.name} GPU", False
    )
