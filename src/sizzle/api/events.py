"""Live session updates as server-sent events: status, progress, minutes and cost.

A stream starts from the session as it is now and then follows the process's SessionWatcher,
which reads every watched session once a tick for all the streams together."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import cast

from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Receive, Scope, Send

from sizzle.api.schemas import SessionOut
from sizzle.api.views import session_out
from sizzle.db.models import User
from sizzle.services.session_watch import Sighting, Subscription
from sizzle.state import AppState

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def snapshot(sighting: Sighting, *, for_admin: bool) -> SessionOut:
    """The session JSON of a sighting, built once per tick however many streams send it."""
    key = ("session_out", for_admin)
    if key not in sighting.memo:
        sighting.memo[key] = session_out(sighting.session, sighting.now, for_admin=for_admin)
    return cast(SessionOut, sighting.memo[key])


def as_sse(snapshot: SessionOut) -> str:
    return f"event: session\ndata: {snapshot.model_dump_json()}\n\n"


async def sightings(first: Sighting, subscription: Subscription | None) -> AsyncIterator[Sighting]:
    """The session as first read, then each change and heartbeat, until it has ended."""
    yield first
    if subscription is None:  # it had ended already
        return
    while (seen := await subscription.next()) is not None:
        yield seen
        if seen.ended:
            return


class EventStream(StreamingResponse):
    """Server-sent events that give their subscription back however the response ends:
    the session ended, the client went away, or sending failed. Under uvicorn (ASGI 2.3)
    Starlette waits for `http.disconnect` beside the stream and cancels it, so no stream
    polls to notice its client has gone."""

    def __init__(self, content: AsyncIterator[str], subscription: Subscription | None) -> None:
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self.subscription = subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.subscription is not None:
                self.subscription.close()


async def session_stream(
    state: AppState,
    session_id: str,
    user: User,
    *,
    render: Callable[[Sighting], str],
    balances: bool = False,
    page: bool = False,
    tx: AsyncSession | None = None,
) -> EventStream:
    """The user's session as a stream of `render`ed events: 404 if it is not theirs and 429
    past the per-user cap, both before the first byte is sent. The session is first read in
    `tx` when given (the request's read transaction), else in a read of its own."""
    first, subscription = await state.watcher.watch(
        session_id, user_id=user.id, balances=balances, page=page, tx=tx
    )

    async def events() -> AsyncIterator[str]:
        async for seen in sightings(first, subscription):
            yield render(seen)

    return EventStream(events(), subscription)


def session_event(for_admin: bool) -> Callable[[Sighting], str]:
    """The API's `event: session` with the session JSON, made once per tick and audience."""

    def render(seen: Sighting) -> str:
        key = ("api_sse", for_admin)
        if key not in seen.memo:
            seen.memo[key] = as_sse(snapshot(seen, for_admin=for_admin))
        return cast(str, seen.memo[key])

    return render
