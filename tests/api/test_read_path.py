"""The hot read path: a GET of my session is one read transaction for me and the session, and
nothing on the sessions and workspace routes runs in the thread pool."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import httpx
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import event

from sizzle.api import deps
from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import READ_ONLY, Database
from sizzle.state import AppState
from sizzle.web import deps as web_deps
from tests.helpers import create_session, log_in, make_user


def _on_loop(call: Any) -> bool:
    """Whether FastAPI awaits `call` on the event loop (a plain def or a class it runs in its
    thread pool)."""
    if inspect.isclass(call):
        return False
    target = call if inspect.isroutine(call) else type(call).__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _api_routes(state: AppState) -> Iterator[APIRoute]:
    def walk(routes: list[Any]) -> Iterator[APIRoute]:
        for route in routes:
            if hasattr(route, "original_router"):
                yield from walk(route.original_router.routes)
            elif isinstance(route, APIRoute):
                yield route

    yield from walk(create_app(state=state, run_jobs=False).routes)


def test_nothing_on_the_sessions_and_workspace_routes_runs_in_the_thread_pool(
    state: AppState,
) -> None:
    hops = []
    for route in _api_routes(state):
        own = [c for c in _calls(route.dependant) if c.__module__ in (deps.__name__,)]
        own += [c for c in _calls(route.dependant) if c.__module__ == web_deps.__name__]
        hot = route.path.startswith(("/api/v1/sessions", "/v1/"))
        checked = [route.endpoint, *_calls(route.dependant)] if hot else own
        hops += [(route.path, getattr(c, "__name__", c)) for c in checked if not _on_loop(c)]
    assert hops == []


class Transactions:
    """Every transaction begun on the database, and whether it was a read."""

    def __init__(self, db: Database) -> None:
        self.reads: list[bool] = []
        self._engine = db.engine.sync_engine
        event.listen(self._engine, "begin", self._begun)

    def _begun(self, connection: Any) -> None:
        self.reads.append(bool(connection.get_execution_options().get(READ_ONLY, False)))

    def close(self) -> None:
        event.remove(self._engine, "begin", self._begun)


async def _my_session(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> tuple[dict[str, str], str]:
    user = await make_user(db, now=clock.now(), credit_usd="5")
    auth = await log_in(client, email=user.email)
    return auth, (await create_session(client, auth=auth, tier="starter"))["id"]


async def test_reading_my_session_is_one_read_transaction(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth, session_id = await _my_session(client, db, clock)
    seen = Transactions(db)
    try:
        response = await client.get(f"/api/v1/sessions/{session_id}", headers=auth)
        listed = await client.get("/api/v1/sessions", headers=auth)
    finally:
        seen.close()
    assert response.status_code == 200 and response.json()["id"] == session_id
    assert listed.status_code == 200 and listed.json()["total"] == 1
    assert seen.reads == [True, True]


async def test_with_a_key_too_once_its_last_use_is_noted(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth, session_id = await _my_session(client, db, clock)
    made = await client.post(
        "/api/v1/keys", json={"name": "reader", "scopes": ["sessions:read"]}, headers=auth
    )
    key = {"X-API-Key": made.json()["key"]}
    assert (await client.get(f"/api/v1/sessions/{session_id}", headers=key)).status_code == 200
    seen = Transactions(db)
    try:
        response = await client.get(f"/api/v1/sessions/{session_id}", headers=key)
    finally:
        seen.close()
    assert response.status_code == 200
    assert seen.reads == [True]  # the last use was noted a moment ago: no write


class Statements:
    """Every statement run on the database."""

    def __init__(self, db: Database) -> None:
        self.seen: list[str] = []
        self._engine = db.engine.sync_engine
        event.listen(self._engine, "before_cursor_execute", self._run)

    def _run(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        self.seen.append(statement)

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._run)


async def test_reading_my_session_is_one_statement_with_a_token_or_a_key(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth, session_id = await _my_session(client, db, clock)
    made = await client.post(
        "/api/v1/keys", json={"name": "reader", "scopes": ["sessions:read"]}, headers=auth
    )
    key = {"X-API-Key": made.json()["key"]}
    assert (await client.get(f"/api/v1/sessions/{session_id}", headers=key)).status_code == 200
    seen = Statements(db)
    try:
        by_token = await client.get(f"/api/v1/sessions/{session_id}", headers=auth)
        statements_by_token = len(seen.seen)
        by_key = await client.get(f"/api/v1/sessions/{session_id}", headers=key)
    finally:
        seen.close()
    assert by_token.status_code == 200 and by_token.json()["id"] == session_id
    assert by_key.status_code == 200 and by_key.json()["id"] == session_id
    # the user and the session in one SELECT (the key's own row is one more)
    assert statements_by_token == 1
    assert len(seen.seen) - statements_by_token == 2


async def test_another_users_session_read_ahead_is_still_not_found(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    _, theirs = await _my_session(client, db, clock)
    other = await make_user(db, now=clock.now(), email="other@example.com")
    mine = await log_in(client, email=other.email)
    for session_id in (theirs, "missing", "x" * 64, "x" * 65):
        response = await client.get(f"/api/v1/sessions/{session_id}", headers=mine)
        assert response.status_code == 404, session_id
        assert response.json()["error"]["code"] == "not_found"
    # not read ahead (PostgreSQL cannot hold a NUL): the path's check answers
    response = await client.get("/api/v1/sessions/a%00b", headers=mine)
    assert response.status_code == 422
