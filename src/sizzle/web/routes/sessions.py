"""Session pages: history, the launch wizard, the live session page and its chat."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from sizzle.api.deps import PagingDep, StateDep
from sizzle.api.views import session_out
from sizzle.db.models import GpuSession
from sizzle.services import sessions
from sizzle.web.deps import SignedIn
from sizzle.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/sessions", response_class=HTMLResponse)
async def history(request: Request, state: StateDep, user: SignedIn, paging: PagingDep) -> Response:
    """Every session of mine, newest first, with totals."""
    async with state.db.read() as tx:
        rows, total = await sessions.list_sessions(
            tx, user_id=user.id, limit=paging.limit, offset=paging.offset
        )
        minutes, cost = (
            await tx.execute(
                select(
                    func.coalesce(func.sum(GpuSession.charged_minutes), 0),
                    func.coalesce(
                        func.sum(GpuSession.charged_minutes * GpuSession.price_micros_per_minute), 0
                    ),
                ).where(GpuSession.user_id == user.id)
            )
        ).one()
    now = state.clock.now()
    return render(
        request,
        "sessions/history.html",
        user=user,
        sessions=[session_out(s, now, for_admin=False) for s in rows],
        total=total,
        total_minutes=int(minutes),
        total_cost_micros=int(cost),
        paging=paging,
    )
