"""Every log line of an HTTP request carries its request id (echoed as X-Request-ID), and its
session id where the path names a session."""

from __future__ import annotations

import httpx
import structlog
from structlog.testing import capture_logs

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from tests.helpers import create_session, log_in, make_user


async def test_log_lines_carry_the_request_and_session_ids(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await log_in(client, email=(await make_user(db, now=clock.now())).email)
    session_id = (await create_session(client, auth=auth, tier="starter"))["id"]
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        stopped = await client.post(
            f"/api/v1/sessions/{session_id}/stop", headers={**auth, "X-Request-ID": "trace-42"}
        )
        other = await client.get("/api/v1/sessions", headers=auth)
    assert stopped.status_code == 200 and stopped.headers["x-request-id"] == "trace-42"
    mine = [line for line in lines if line.get("request_id") == "trace-42"]
    assert mine, lines
    assert all(line.get("session_id") == session_id for line in mine)
    # a fresh id otherwise, and nothing left over from the request before
    fresh = other.headers["x-request-id"]
    assert len(fresh) == 32 and fresh != "trace-42"
    assert all(line.get("session_id") is None for line in lines if line.get("request_id") == fresh)


async def test_an_odd_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "x" * 65})
    assert response.headers["x-request-id"] != "x" * 65
    assert len(response.headers["x-request-id"]) == 32
