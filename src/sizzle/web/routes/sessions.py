"""Session pages: history, and the live session page with its actions, events and chat. The
launch wizard is in launch.py."""

from __future__ import annotations

import json
from typing import Annotated, cast

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from sizzle.api.deps import IdPath, PagingDep, StateDep
from sizzle.api.events import session_stream, snapshot
from sizzle.api.routers.launch_queue import queued_out
from sizzle.api.routers.sessions import SessionId, SessionSshOut, metrics_of, ssh_of
from sizzle.api.schemas import SessionMetricsOut
from sizzle.api.views import charges_of, session_out
from sizzle.clock import to_ms
from sizzle.db.models import GpuSession
from sizzle.domain.charges import Funds, MoneyNow
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.errors import NotFound
from sizzle.providers.base import SupportsPause
from sizzle.services import (
    activity,
    budget,
    conversations,
    launch_queue,
    ledger,
    sessions,
    ssh_keys,
)
from sizzle.services.ledger import Balances
from sizzle.services.session_watch import Sighting
from sizzle.web.deps import CsrfChecked, SignedIn
from sizzle.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/sessions", response_class=HTMLResponse)
async def history(
    request: Request,
    state: StateDep,
    user: SignedIn,
    paging: PagingDep,
    queued: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """The launches waiting for a GPU, then every session of mine, newest first, with totals."""
    async with state.db.read() as tx:
        rows, total = await sessions.list_sessions(
            tx, user_id=user.id, limit=paging.limit, offset=paging.offset
        )
        totals = await sessions.usage_totals(tx, user_id=user.id)
        waiting, _ = await launch_queue.list_queued(
            tx,
            user_id=user.id,
            limit=state.settings.queue_max_per_user,
            offset=0,
            status=launch_queue.QueueStatus.WAITING,
        )
    now = state.clock.now()
    return render(
        request,
        "sessions/history.html",
        user=user,
        sessions=[(session_out(s, now, for_admin=False), charges_of(s)) for s in rows],
        total=total,
        totals=totals,
        paging=paging,
        waiting=[queued_out(view, now) for view in reversed(waiting)],  # oldest first
        just_queued=queued is not None,
    )


@router.post("/launch-queue/{queue_id}/cancel", dependencies=[CsrfChecked])
async def cancel_queued(state: StateDep, user: SignedIn, queue_id: IdPath) -> Response:
    """Stop waiting for a GPU (the sessions page's Cancel)."""
    await launch_queue.cancel(state.db, queue_id=queue_id, user_id=user.id, now=state.clock.now())
    return RedirectResponse("/sessions", status_code=303)


# --- the live session page -------------------------------------------------------------------

END_REASONS = {
    EndReason.USER.value: "You stopped it.",
    EndReason.ABANDONED.value: "It was ready but never started, so Sizzle released the GPU.",
    EndReason.MAX_MINUTES.value: "It reached the time limit or spending cap you set.",
    EndReason.PAUSE_EXPIRED.value: "It stayed paused too long, so Sizzle released the GPU.",
    EndReason.INSUFFICIENT_CREDITS.value: "Your free minutes and credit ran out.",
    EndReason.BUDGET.value: (
        "Your monthly budget was reached. Raise it on your account page, or new sessions "
        "can start again when the next month begins (UTC)."
    ),
    EndReason.PROVISIONING_FAILED.value: "No GPU could be started for it. You were not charged.",
    EndReason.PROVIDER_LOST.value: "The GPU's provider lost the machine.",
    EndReason.ACCOUNT_SUSPENDED.value: "An operator suspended the account.",
    EndReason.ACCOUNT_DELETED.value: "The account was deleted.",
    EndReason.IDLE.value: "Nobody used it for its idle limit, so Sizzle stopped it to save your "
    "money. You were billed up to that moment.",
}
ACTIONS = ("start", "pause", "resume", "stop")
SIDEBAR_CHATS = 30  # the live page lists this many recent chats; the Chats page has them all


def money_of(session: GpuSession, money: Balances) -> dict[str, object]:
    """The live page's money figures, now and once the next minute is charged (the page shows
    that as soon as the minute starts, before metering charges it): words from domain/charges."""
    now = MoneyNow(
        charges=charges_of(session),
        funds=Funds(money.free_minutes, money.included_minutes, money.credit_micros),
        price_micros=session.price_micros_per_minute,
        lab_covered=session.lab_covered,
    )
    after = now.after_next_minute()
    return {"now": now.shown(), "next": after.shown() if after else None}


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
async def live(
    request: Request, state: StateDep, user: SignedIn, session_id: SessionId
) -> Response:
    async with state.db.read() as tx:
        found = await sessions.get_session(tx, session_id, user_id=user.id)
        ssh_offer = await ssh_keys.page_offer(tx, state.providers, found)
        balances = await ledger.balances(tx, user.id)
        month = await budget.month_state(tx, user.id, now=state.clock.now())
        paused_idle = found.status == SessionStatus.PAUSED.value and (
            await activity.paused_for_idle(tx, found.id)
        )
        chats, _ = await conversations.list_conversations(
            tx, user_id=user.id, query=None, limit=SIDEBAR_CHATS, offset=0
        )
    seen = session_out(found, state.clock.now(), for_admin=False)
    provider = state.providers.get(found.provider or "")
    return render(
        request,
        "sessions/live.html",
        user=user,
        s=seen,
        money=money_of(found, balances),
        budget=month,
        ended=SessionStatus(found.status).is_terminal(),
        end_reason=END_REASONS.get(found.end_reason or "", found.end_reason),
        ssh_offer=ssh_offer,
        paused_idle=paused_idle,
        can_pause=isinstance(provider, SupportsPause) and bool(found.instance_id),
        chats=chats,
        api_base=state.settings.public_base_url,
    )


@router.get("/sessions/{session_id}/events")
async def live_events(state: StateDep, user: SignedIn, session_id: SessionId) -> StreamingResponse:
    """Server-sent events for the live page: the session and the credit left, on each change."""

    def render(seen: Sighting) -> str:
        if "page" not in seen.memo:  # the same for every page of its owner at this tick
            session = snapshot(seen, for_admin=False)
            money = seen.balances or Balances(free_minutes=0, credit_micros=0)
            payload = {
                "session": session.model_dump(mode="json"),
                "money": money_of(seen.session, money),
            }
            seen.memo["page"] = f"event: session\ndata: {json.dumps(payload)}\n\n"
        return cast(str, seen.memo["page"])

    return await session_stream(state, session_id, user, render=render, balances=True, page=True)


@router.get("/sessions/{session_id}/ssh.json")
async def live_ssh(state: StateDep, user: SignedIn, session_id: SessionId) -> SessionSshOut:
    """How to log in to the session's machine (the page's Connect box)."""
    return await ssh_of(state, session_id, user_id=user.id)


@router.get("/sessions/{session_id}/metrics.json")
async def live_metrics(state: StateDep, user: SignedIn, session_id: SessionId) -> SessionMetricsOut:
    return await metrics_of(state, session_id, user_id=user.id)


@router.post("/sessions/{session_id}/keep-alive", dependencies=[CsrfChecked])
async def live_keep_alive(
    request: Request, state: StateDep, user: SignedIn, session_id: SessionId
) -> Response:
    """The page's "Keep it running": the session counts as used now. The page's script gets
    the session back as JSON; a plain form goes back to the page."""
    await activity.keep_alive(
        state.db, session_id=session_id, user=user, now_ms=to_ms(state.clock.now())
    )
    if "application/json" in request.headers.get("accept", ""):
        async with state.db.read() as tx:
            found = await sessions.get_session(tx, session_id, user_id=user.id)
        out = session_out(found, state.clock.now(), for_admin=False)
        return Response(out.model_dump_json(), media_type="application/json")
    return RedirectResponse(f"/sessions/{session_id}", status_code=303)


# Declared last (and the chats' routes, web/routes/chats.py, before this module): its path
# would otherwise swallow /sessions/{id}/chat and /sessions/{id}/keep-alive.
@router.post("/sessions/{session_id}/{action}", dependencies=[CsrfChecked])
async def act(
    state: StateDep, user: SignedIn, session_id: SessionId, action: Annotated[str, Path()]
) -> Response:
    """Start, pause, resume or stop, then back to the live page (a refusal is an error page)."""
    now = state.clock.now()
    if action == "start":
        await sessions.start_session(state.db, session_id=session_id, user=user, now=now)
    elif action == "pause":
        await sessions.pause_session(
            state.db, state.providers, session_id=session_id, user=user, now=now
        )
    elif action == "resume":
        await sessions.resume_session(
            state.db, state.providers, session_id=session_id, user=user, now=now
        )
    elif action == "stop":
        await sessions.stop_session(
            state.db, state.providers, session_id=session_id, user=user, now=now
        )
    else:
        raise NotFound(f"there is no {action!r} for a session")
    return RedirectResponse(f"/sessions/{session_id}", status_code=303)
