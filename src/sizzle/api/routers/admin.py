"""Operator views: every session with its provider and attempt log, the providers' health."""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from sizzle.api.deps import AdminUser, PagingDep, StateDep, TxDep
from sizzle.api.schemas import Page, SessionOut, usd
from sizzle.api.views import session_out
from sizzle.db.models import LaunchAttempt, SessionEvent
from sizzle.services import sessions

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class ProviderOut(BaseModel):
    name: str
    label: str
    healthy: bool
    detail: str | None
    breaker: str
    disabled_reason: str | None
    last_error: str | None
    latency_ms: float | None
    offer_count: int | None


class AttemptOut(BaseModel):
    provider: str
    offer_id: str
    gpu_type: str
    gpu_count: int
    upstream_price_per_hour_usd: str
    outcome: str
    error: str | None
    at: datetime


class EventOut(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    at: datetime


class SessionDetailOut(SessionOut):
    user_id: str
    upstream_price_per_hour_usd: str | None
    attempts: list[AttemptOut]
    events: list[EventOut]


@router.get("/sessions", response_model=Page[SessionOut])
async def all_sessions(
    _admin: AdminUser, state: StateDep, tx: TxDep, paging: PagingDep
) -> Page[SessionOut]:
    rows, total = await sessions.list_sessions(
        tx, user_id=None, limit=paging.limit, offset=paging.offset
    )
    now = state.clock.now()
    return Page(items=[session_out(s, now, for_admin=True) for s in rows], total=total)


@router.get("/sessions/{session_id}", response_model=SessionDetailOut)
async def session_detail(
    session_id: str, _admin: AdminUser, state: StateDep, tx: TxDep
) -> SessionDetailOut:
    session = await sessions.get_session(tx, session_id, user_id=None)
    attempts = await tx.scalars(
        select(LaunchAttempt)
        .where(LaunchAttempt.session_id == session.id)
        .order_by(LaunchAttempt.id)
    )
    events = await tx.scalars(
        select(SessionEvent).where(SessionEvent.session_id == session.id).order_by(SessionEvent.id)
    )
    upstream = session.upstream_micros_per_hour
    return SessionDetailOut(
        **session_out(session, state.clock.now(), for_admin=True).model_dump(),
        user_id=session.user_id,
        upstream_price_per_hour_usd=usd(upstream) if upstream is not None else None,
        attempts=[
            AttemptOut(
                provider=a.provider,
                offer_id=a.offer_id,
                gpu_type=a.gpu_type,
                gpu_count=a.gpu_count,
                upstream_price_per_hour_usd=usd(a.upstream_micros_per_hour),
                outcome=a.outcome,
                error=a.error,
                at=a.created_at,
            )
            for a in attempts
        ],
        events=[
            EventOut(
                from_status=e.from_status,
                to_status=e.to_status,
                actor=e.actor,
                reason=e.reason,
                at=e.created_at,
            )
            for e in events
        ],
    )


@router.get("/providers", response_model=list[ProviderOut])
async def providers(_admin: AdminUser, state: StateDep) -> list[ProviderOut]:
    plugins = list(state.providers.values())
    health = await asyncio.gather(*(plugin.health() for plugin in plugins))
    now = state.clock.now()
    out = []
    for plugin, checked in zip(plugins, health, strict=True):
        status = state.orchestrator.status[plugin.name]
        out.append(
            ProviderOut(
                name=plugin.name,
                label=plugin.label,
                healthy=checked.healthy,
                detail=checked.detail,
                breaker=status.state(now).value,
                disabled_reason=status.disabled_reason,
                last_error=status.last_error,
                latency_ms=status.last_latency_ms,
                offer_count=status.offer_count,
            )
        )
    return out
