"""Live session events: the stream's snapshots as a session moves, over a fake clock."""

from __future__ import annotations

import json

import httpx

from sizzle.api.events import session_snapshots
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import User
from sizzle.state import AppState
from tests.helpers import act, create_session, launch_active_session, sign_up


async def _user(db: Database, auth: dict[str, str], client: httpx.AsyncClient) -> User:
    me = (await client.get("/api/v1/auth/me", headers=auth)).json()
    async with db.transaction() as tx:
        return await tx.get(User, me["id"])


async def test_the_stream_follows_a_session_from_pending_to_its_end(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = (await create_session(client, auth=auth, tier="starter"))["id"]
    user = await _user(db, auth, client)
    script = iter(["launch", "wait", "ready", "start", "run", "run", "stop"])

    async def tick(_seconds: float) -> None:  # instead of sleeping, move the world on
        step = next(script)
        if step in ("launch", "ready"):
            clock.advance(5 if step == "ready" else 0)
            await state.jobs.housekeep()
        elif step in ("start", "stop"):
            await act(client, auth=auth, session_id=session_id, action=step)
        elif step == "run":
            clock.advance(40)
            await state.jobs.meter()

    seen = [
        (s.status, s.charged_minutes)
        async for s in session_snapshots(state, session_id, user, sleep=tick)
    ]
    assert seen == [
        ("pending", 0),
        ("provisioning", 0),
        ("ready", 0),
        ("active", 0),
        ("active", 1),
        ("active", 2),
        ("terminated", 2),
    ]


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


async def test_another_users_session_stream_is_404(client: httpx.AsyncClient) -> None:
    owner, other = await sign_up(client), await sign_up(client)
    session_id = (await create_session(client, auth=owner, tier="starter"))["id"]
    response = await client.get(f"/api/v1/sessions/{session_id}/events", headers=other)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
