"""Live session updates as server-sent events: status, progress, minutes and cost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from sizzle.api.schemas import SessionOut
from sizzle.api.views import session_out
from sizzle.db.models import User
from sizzle.domain.lifecycle import SessionStatus
from sizzle.services import sessions
from sizzle.state import AppState

HEARTBEAT_TICKS = 15  # a snapshot at least this often, so a page's timer stays in step


async def session_snapshots(
    state: AppState,
    session_id: str,
    user: User,
    *,
    poll_seconds: float = 1.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[SessionOut]:
    """The session as it changes (and at least every few ticks), until it has ended."""
    last: tuple[object, ...] | None = None
    ticks_since = 0
    while True:
        async with state.db.transaction() as tx:
            session = await sessions.get_session(tx, session_id, user_id=user.id)
        snapshot = session_out(session, state.clock.now(), for_admin=user.is_admin)
        key = (snapshot.status, snapshot.charged_minutes, snapshot.progress, snapshot.error)
        if key != last or ticks_since >= HEARTBEAT_TICKS:
            yield snapshot
            last, ticks_since = key, 0
        if SessionStatus(snapshot.status).is_terminal():
            return
        ticks_since += 1
        await sleep(poll_seconds)


def as_sse(snapshot: SessionOut) -> str:
    return f"event: session\ndata: {snapshot.model_dump_json()}\n\n"
