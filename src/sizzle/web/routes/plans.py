"""The plans page: what each plan includes, which one is mine, and how to change it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from sizzle.api.deps import StateDep
from sizzle.domain.lab import LAB_NAME
from sizzle.domain.tiers import PLANS, TIERS
from sizzle.web.deps import MaybeUser
from sizzle.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/plans", response_class=HTMLResponse)
async def plans_page(request: Request, state: StateDep, user: MaybeUser) -> Response:
    """Every plan with its tiers and sessions at once; anyone may read it."""
    rows = [
        {
            "name": plan.name,
            "tiers": [t for t in TIERS.values() if t.name in plan.allowed_tiers],
            "sessions": plan.max_concurrent_sessions,
            "mine": user is not None and user.plan == plan.name,
        }
        for plan in PLANS.values()
    ]
    return render(
        request,
        "plans.html",
        user=user,
        plans=rows,
        lab_name=LAB_NAME,
        support_email=state.settings.support_email,
    )
