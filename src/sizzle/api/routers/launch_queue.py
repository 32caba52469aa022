"""Queued launches ("tell me when it's free"): wait for a GPU of a tier that has none now."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from fastapi.responses import Response
from pydantic import BaseModel, Field

from sizzle.api.deps import (
    IdPath,
    PagingDep,
    ReadTxDep,
    SessionsReader,
    SessionsWriter,
    StateDep,
)
from sizzle.api.openapi import error_responses
from sizzle.api.routers.sessions import asked_idle_minutes, spend_cap_of
from sizzle.api.schemas import Page, SessionCreateIn, usd
from sizzle.db.models import QueuedLaunch
from sizzle.domain.tiers import TIERS
from sizzle.services import launch_queue, model_library, sessions
from sizzle.services.launch_queue import QueuedView, QueueStatus

router = APIRouter(prefix="/api/v1/launch-queue", tags=["launch queue"])

StatusName = Literal["waiting", "launched", "ready", "cancelled", "expired", "refused"]


class QueuedLaunchOut(BaseModel):
    id: str
    status: StatusName = Field(
        description="waiting; launched (its session is starting: see `session_id`); ready (its "
        "session is ready, and you were told); cancelled; expired (no GPU within the wait); "
        "refused (no longer allowed: `reason` says why)."
    )
    tier: str
    model: str | None = Field(description="The Ollama tag to run, or none.")
    model_name: str | None = Field(
        None, description="The model as the library names it; its tag when it is not there."
    )
    max_minutes: int | None
    spend_cap_usd: str | None
    price_per_minute_usd: str | None = Field(description="The tier's price now.")
    position: int | None = Field(
        description="While waiting: its place in line for the tier (1 is next)."
    )
    waited_seconds: int = Field(description="From queued until launched or ended, or until now.")
    created_at: datetime
    expires_at: datetime = Field(description="When it stops waiting if no GPU was free.")
    launched_at: datetime | None
    ended_at: datetime | None
    session_id: str | None = Field(description="The session it launched.")
    reason: str | None = Field(
        description="Why it ended, or why the last GPU found could not be started."
    )


def queued_out(view: QueuedView, now: datetime) -> QueuedLaunchOut:
    entry: QueuedLaunch = view.entry
    until = entry.launched_at if entry.status != QueueStatus.WAITING else None
    until = until or entry.ended_at or now
    tier = TIERS.get(entry.tier)
    return QueuedLaunchOut(
        id=entry.id,
        status=entry.status,
        tier=entry.tier,
        model=entry.model,
        model_name=model_library.model_name(entry.model) if entry.model else None,
        max_minutes=entry.max_minutes,
        spend_cap_usd=usd(entry.spend_cap_micros) if entry.spend_cap_micros is not None else None,
        price_per_minute_usd=usd(tier.price_micros_per_minute) if tier else None,
        position=view.position,
        waited_seconds=max(0, int((until - entry.created_at).total_seconds())),
        created_at=entry.created_at,
        expires_at=entry.expires_at,
        launched_at=entry.launched_at,
        ended_at=entry.ended_at,
        session_id=entry.session_id,
        reason=entry.reason,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=QueuedLaunchOut,
    responses=error_responses(402, 409, 422),
)
async def queue(body: SessionCreateIn, user: SessionsWriter, state: StateDep) -> QueuedLaunchOut:
    """Launch a session when a GPU of the tier is free: the same body as `POST
    /api/v1/sessions`, for a tier with no capacity now (that answers 503 `no_capacity`). It
    waits, holding nothing and costing nothing, until a job launches it (at once if a GPU is
    free: the queue is looked at as soon as it is asked), oldest first, through the same
    checks as a direct launch; you are told (inbox and mail) when its session is ready, or why
    it ended. Refused now as a direct launch would be (402, 403, 409, 422), besides 409
    `queue_full` past `SIZZLE_QUEUE_MAX_PER_USER` waiting. It expires after
    `SIZZLE_QUEUE_MAX_HOURS`."""
    tier = sessions.find_tier(body.tier)
    chosen = model_library.choose_session_model(body.model, tier) if body.model else None
    now = state.clock.now()
    queued = await launch_queue.queue_launch(
        state.db,
        user_id=user.id,
        tier_name=tier.name,
        model=chosen.ollama_tag if chosen else None,
        max_minutes=body.max_minutes,
        spend_cap_micros=spend_cap_of(body),
        idle_minutes=asked_idle_minutes(body, state),
        now=now,
        max_wait=state.settings.queue_max_wait,
        max_waiting=state.settings.queue_max_per_user,
        lab_tiers=state.settings.lab.tiers,
    )
    state.jobs.poke_queue()
    return queued_out(queued, now)


@router.get("", response_model=Page[QueuedLaunchOut])
async def list_mine(
    user: SessionsReader,
    state: StateDep,
    tx: ReadTxDep,
    paging: PagingDep,
    status: Annotated[StatusName | None, Query(description="Only those in this status.")] = None,
) -> Page[QueuedLaunchOut]:
    """My queued launches, newest first, with each waiting one's place in line."""
    rows, total = await launch_queue.list_queued(
        tx,
        user_id=user.id,
        limit=paging.limit,
        offset=paging.offset,
        status=QueueStatus(status) if status else None,
    )
    now = state.clock.now()
    return Page(items=[queued_out(row, now) for row in rows], total=total)


@router.get("/{queue_id}", response_model=QueuedLaunchOut)
async def read(
    queue_id: IdPath, user: SessionsReader, state: StateDep, tx: ReadTxDep
) -> QueuedLaunchOut:
    """One of my queued launches."""
    found = await launch_queue.get_queued(tx, queue_id, user_id=user.id)
    return queued_out(found, state.clock.now())


@router.delete(
    "/{queue_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(409)
)
async def cancel(queue_id: IdPath, user: SessionsWriter, state: StateDep) -> Response:
    """Stop waiting. One that ended already stays as it was (204 all the same); one launched
    already is a 409 `already_launched` naming its session: stop that instead."""
    await launch_queue.cancel(state.db, queue_id=queue_id, user_id=user.id, now=state.clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
