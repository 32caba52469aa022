"""Live session events: the stream's snapshots as a session moves, over a fake clock; one
watcher read per tick however many streams are open, stops delivered at the next tick, the
per-account cap, and streams given back when their client goes away (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import event

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.services.session_watch import HEARTBEAT_TICKS, SessionWatcher
from sizzle.state import AppState
from sizzle.web.security import SESSION_COOKIE
from tests.helpers import act, create_session, launch_active_session, serve_here, sign_up

WAIT = 10  # seconds a real socket gets to deliver what is already sent


async def _user_id(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    return str((await client.get("/api/v1/auth/me", headers=auth)).json()["id"])


def _manual_watcher(state: AppState, *, cap: int = 20) -> SessionWatcher:
    """The app's watcher swapped for one that ticks only when the test says so."""
    state.watcher = SessionWatcher.manual(state.db, state.clock, max_streams_per_user=cap)
    return state.watcher


@dataclass
class Reads:
    transactions: int = 0
    selects: int = 0


@contextmanager
def counting(db: Database) -> Iterator[Reads]:
    """Transactions begun and SELECTs sent to the database inside the block."""
    reads = Reads()

    def on_begin(_connection: Any) -> None:
        reads.transactions += 1

    def on_statement(*args: Any) -> None:
        reads.selects += args[2].lstrip().upper().startswith("SELECT")

    engine = db.engine.sync_engine
    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield reads
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "before_cursor_execute", on_statement)


def _cookie(auth: dict[str, str]) -> dict[str, str]:
    """The page's session cookie for a user signed in through the API (the same token)."""
    return {"Cookie": f"{SESSION_COOKIE}={auth['Authorization'].removeprefix('Bearer ')}"}


class Stream:
    """One open server-sent event stream, read event by event."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> Any | None:
        """The next event's data; None when the server ended the stream."""
        async with asyncio.timeout(WAIT):
            data = None
            async for line in self._lines:
                if line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))
                elif line == "" and data is not None:
                    return data
        return None


@asynccontextmanager
async def streams(
    base: str, paths: list[str], *, headers: dict[str, str]
) -> AsyncIterator[list[Stream]]:
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=WAIT))
        opened = []
        for path in paths:
            response = await stack.enter_async_context(http.stream("GET", path, headers=headers))
            assert response.status_code == 200
            opened.append(Stream(response))
        yield opened


async def test_the_stream_follows_a_session_from_pending_to_its_end(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = (await create_session(client, auth=auth, tier="starter"))["id"]
    watcher = SessionWatcher.manual(db, clock, max_streams_per_user=1)
    first, subscription = await watcher.watch(session_id, user_id=await _user_id(client, auth))
    assert subscription is not None
    seen = [(first.session.status, first.session.charged_minutes)]
    for step in ["launch", "wait", "ready", "start", "run", "run", "stop"]:
        if step in ("launch", "ready"):
            clock.advance(5 if step == "ready" else 0)
            await state.jobs.housekeep()
        elif step in ("start", "stop"):
            await act(client, auth=auth, session_id=session_id, action=step)
        elif step == "run":
            clock.advance(40)
            await state.jobs.meter()
        await watcher.tick()
        if (sighting := subscription.poll()) is not None:
            seen.append((sighting.session.status, sighting.session.charged_minutes))
    assert seen == [
        ("pending", 0),
        ("provisioning", 0),
        ("ready", 0),
        ("active", 0),
        ("active", 1),
        ("active", 2),
        ("terminated", 2),
    ]
    assert watcher.watched == 0  # an ended session is no longer read


async def test_a_quiet_session_gets_a_heartbeat_every_few_ticks(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    watcher = SessionWatcher.manual(db, clock, max_streams_per_user=1)
    _, subscription = await watcher.watch(session_id, user_id=await _user_id(client, auth))
    assert subscription is not None
    beats = []
    for _ in range(2 * HEARTBEAT_TICKS):
        await watcher.tick()
        beats.append(subscription.poll() is not None)
    assert beats == ([False] * (HEARTBEAT_TICKS - 1) + [True]) * 2


async def test_many_streams_of_one_session_cost_one_read_per_tick(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    watcher = SessionWatcher.manual(db, clock, max_streams_per_user=100)
    user_id = await _user_id(client, auth)
    for _ in range(100):
        await watcher.watch(session_id, user_id=user_id)
    with counting(db) as reads:
        for _ in range(3):
            await watcher.tick()
    assert (reads.transactions, reads.selects) == (3, 3)  # the old streams: 300 each


async def test_every_stream_sees_a_stop_at_the_next_tick_over_http(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    watcher = _manual_watcher(state)
    owners = [await sign_up(client) for _ in range(2)]
    sessions = [await launch_active_session(client, state, clock, auth=a) for a in owners]
    async with (
        serve_here(create_app(state=state, run_jobs=False)) as base,
        streams(base, [f"/api/v1/sessions/{sessions[0]}/events"] * 6, headers=owners[0]) as mine,
        streams(base, [f"/api/v1/sessions/{sessions[1]}/events"] * 4, headers=owners[1]) as theirs,
    ):
        for stream in mine + theirs:
            assert (await stream.next())["status"] == "active"
        for auth, session_id in zip(owners, sessions, strict=True):
            stopped = await act(client, auth=auth, session_id=session_id, action="stop")
            assert stopped.json()["status"] == "terminated"
        with counting(db) as reads:
            await watcher.tick()
        assert (reads.transactions, reads.selects) == (1, 1)
        for stream in mine + theirs:
            assert (await stream.next())["status"] == "terminated"
            assert await stream.next() is None  # and the stream ends
    assert watcher.watched == 0 and watcher.streams_of(await _user_id(client, owners[0])) == 0


async def test_opening_a_stream_is_one_read_of_the_caller_and_the_session(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    _manual_watcher(state)
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    async with serve_here(create_app(state=state, run_jobs=False)) as base:
        with counting(db) as reads:
            path = f"/api/v1/sessions/{session_id}/events"
            async with streams(base, [path], headers=auth) as one:
                assert (await one[0].next())["status"] == "active"
        assert reads.transactions == 1


async def test_the_live_page_stream_carries_the_credit_read_in_the_same_tick(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    watcher = _manual_watcher(state)
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    cookie = _cookie(auth)
    async with (
        serve_here(create_app(state=state, run_jobs=False)) as base,
        streams(base, [f"/sessions/{session_id}/events"] * 2, headers=cookie) as pages,
    ):
        for page in pages:
            assert (await page.next())["money"]["now"]["free_left"] == "5 free minutes left"
        clock.advance(61)
        await state.jobs.meter()  # two started minutes, paid with free minutes
        with counting(db) as reads:
            await watcher.tick()
        # One read (the sessions, then the balances) and, these being pages, one UPDATE that
        # marks them seen (services/notifications.py's page_open), for both in one statement.
        assert (reads.transactions, reads.selects, watcher.marks) == (2, 2, 1)
        for page in pages:
            data = await page.next()
            assert data["session"]["charged_minutes"] == 2
            assert data["money"]["now"]["free_left"] == "3 free minutes left"
            assert data["money"]["now"]["text"] == "2 free minutes used · $0.00 charged"
            assert data["money"]["next"]["charged_minutes"] == 3  # shown once minute 3 starts


async def test_more_streams_than_the_cap_is_a_429_until_one_closes(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    watcher = _manual_watcher(state, cap=2)
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    path = f"/api/v1/sessions/{session_id}/events"
    page_path, cookie = f"/sessions/{session_id}/events", _cookie(auth)
    async with serve_here(create_app(state=state, run_jobs=False)) as base:
        async with streams(base, [path], headers=auth), streams(base, [page_path], headers=cookie):
            async with httpx.AsyncClient(base_url=base, timeout=WAIT) as http:
                refused = await http.get(path, headers=auth)
                page_refused = await http.get(page_path, headers=cookie)
            assert refused.status_code == page_refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert "2 live session streams" in refused.json()["error"]["message"]
        user_id = await _user_id(client, auth)
        await _until(lambda: watcher.streams_of(user_id) == 0)
        async with streams(base, [path], headers=auth) as again:
            assert (await again[0].next())["status"] == "active"


async def test_a_client_that_goes_away_gives_its_stream_back(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    watcher = _manual_watcher(state)
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    user_id = await _user_id(client, auth)
    async with serve_here(create_app(state=state, run_jobs=False)) as base:
        async with streams(base, [f"/api/v1/sessions/{session_id}/events"], headers=auth) as one:
            assert (await one[0].next())["status"] == "active"
            assert watcher.streams_of(user_id) == 1 and watcher.watched == 1
        # no tick and nothing sent: the server hears the disconnect itself
        await _until(lambda: watcher.streams_of(user_id) == 0)
        assert watcher.watched == 0
        with counting(db) as reads:
            await watcher.tick()
        assert reads.transactions == 0  # nothing watched: nothing read


async def test_the_loop_ticks_while_streams_watch_and_ends_with_the_last(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    ticks: asyncio.Queue[None] = asyncio.Queue()

    async def next_tick(_seconds: float) -> None:  # the test says when a second has passed
        await ticks.get()

    watcher = SessionWatcher(db, clock, max_streams_per_user=5, sleep=next_tick)
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    _, subscription = await watcher.watch(session_id, user_id=await _user_id(client, auth))
    assert subscription is not None and watcher.running
    await act(client, auth=auth, session_id=session_id, action="stop")
    ticks.put_nowait(None)
    async with asyncio.timeout(WAIT):
        seen = await subscription.next()
    assert seen is not None and seen.ended
    subscription.close()
    await _until(lambda: not watcher.running)  # nothing left to watch: the loop has ended
    assert watcher.ticks == 1


async def test_closing_the_watcher_ends_every_stream(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    watcher = SessionWatcher(db, clock, max_streams_per_user=5)
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    _, subscription = await watcher.watch(session_id, user_id=await _user_id(client, auth))
    assert subscription is not None
    await watcher.close()
    assert await subscription.next() is None and not watcher.running


async def _until(condition: Any) -> None:
    """Wait (bounded) for the server in this event loop to act on a closed socket."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)


async def test_an_ended_session_streams_its_final_state_over_http(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await act(client, auth=auth, session_id=session_id, action="stop")
    response = await client.get(f"/api/v1/sessions/{session_id}/events", headers=auth)
    assert response.headers["content-type"].startswith("text/event-stream")
    event, data = response.text.strip().split("\n")
    assert event == "event: session"
    assert json.loads(data.removeprefix("data: "))["status"] == "terminated"
    assert state.watcher.watched == 0


async def test_another_users_session_stream_is_404(client: httpx.AsyncClient) -> None:
    owner, other = await sign_up(client), await sign_up(client)
    session_id = (await create_session(client, auth=owner, tier="starter"))["id"]
    response = await client.get(f"/api/v1/sessions/{session_id}/events", headers=other)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
