"""Operator views: every session (with its provider) and the providers' health."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel

from sizzle.api.deps import AdminUser, PagingDep, StateDep, TxDep
from sizzle.api.schemas import Page, SessionOut
from sizzle.api.views import session_out
from sizzle.services import sessions

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class ProviderOut(BaseModel):
    name: str
    label: str
    healthy: bool
    detail: str | None


@router.get("/sessions", response_model=Page[SessionOut])
async def all_sessions(
    _admin: AdminUser, state: StateDep, tx: TxDep, paging: PagingDep
) -> Page[SessionOut]:
    rows, total = await sessions.list_sessions(
        tx, user_id=None, limit=paging.limit, offset=paging.offset
    )
    now = state.clock.now()
    return Page(items=[session_out(s, now, for_admin=True) for s in rows], total=total)


@router.get("/providers", response_model=list[ProviderOut])
async def providers(_admin: AdminUser, state: StateDep) -> list[ProviderOut]:
    plugins = list(state.providers.values())
    health = await asyncio.gather(*(plugin.health() for plugin in plugins))
    return [
        ProviderOut(name=p.name, label=p.label, healthy=h.healthy, detail=h.detail)
        for p, h in zip(plugins, health, strict=True)
    ]
