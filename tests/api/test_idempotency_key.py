"""POST /api/v1/sessions with an Idempotency-Key: a retry, a double click or a second replica
answers the session already made; never two sessions for one key."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import select

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import IdempotencyKey
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import assert_error, grant, log_in, make_user, signed_in_user

SESSIONS = "/api/v1/sessions"
BODY = {"tier": "starter", "max_minutes": 30}


async def _count(client: httpx.AsyncClient, auth: dict[str, str]) -> int:
    total: int = (await client.get(SESSIONS, headers=auth)).json()["total"]
    return total


async def test_the_same_key_and_body_answer_the_session_already_made(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock)  # the free plan: one session at once
    key = {**auth, "Idempotency-Key": "launch-1"}
    first = await client.post(SESSIONS, json=BODY, headers=key)
    again = await client.post(SESSIONS, json=BODY, headers=key)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text  # not 409 "too many sessions"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert await _count(client, auth) == 1


async def test_the_same_key_with_another_body_is_refused(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock, plan="starter", credit_usd="5")
    key = {**auth, "Idempotency-Key": "launch-1"}
    first = await client.post(SESSIONS, json=BODY, headers=key)
    other = await client.post(SESSIONS, json={**BODY, "max_minutes": 31}, headers=key)
    assert first.status_code == 201, first.text
    error = assert_error(other, 422, "idempotency_key_reused")
    assert "new key" in error["message"]
    assert await _count(client, auth) == 1


async def test_a_new_key_makes_a_new_session(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock, plan="starter", credit_usd="5")
    one = await client.post(SESSIONS, json=BODY, headers={**auth, "Idempotency-Key": "a"})
    two = await client.post(SESSIONS, json=BODY, headers={**auth, "Idempotency-Key": "b"})
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["id"] != two.json()["id"]


async def test_keys_are_per_user(client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    alice = await signed_in_user(client, db, clock=clock)
    bob = await signed_in_user(client, db, clock=clock)
    one = await client.post(SESSIONS, json=BODY, headers={**alice, "Idempotency-Key": "same"})
    two = await client.post(SESSIONS, json=BODY, headers={**bob, "Idempotency-Key": "same"})
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["id"] != two.json()["id"]


async def test_a_key_is_forgotten_after_a_day(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now(), plan="starter", credit_usd="5")
    key = {"Idempotency-Key": "launch-1"}
    first = await client.post(
        SESSIONS, json=BODY, headers={**key, **await log_in(client, email=user.email)}
    )
    clock.advance(timedelta(hours=24, seconds=1).total_seconds())
    later = await client.post(  # signed in again: a sign-in lasts a day too
        SESSIONS, json=BODY, headers={**key, **await log_in(client, email=user.email)}
    )
    assert (first.status_code, later.status_code) == (201, 201)
    assert later.json()["id"] != first.json()["id"]


async def test_the_jobs_forget_every_users_keys_older_than_a_day(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    old = await signed_in_user(client, db, clock=clock, plan="starter", credit_usd="5")
    await client.post(SESSIONS, json=BODY, headers={**old, "Idempotency-Key": "old"})
    clock.advance(timedelta(hours=23).total_seconds())
    recent = await signed_in_user(client, db, clock=clock, plan="starter", credit_usd="5")
    await client.post(SESSIONS, json=BODY, headers={**recent, "Idempotency-Key": "recent"})
    clock.advance(timedelta(hours=1, seconds=1).total_seconds())
    await state.jobs.tidy()  # neither user sent another key
    async with db.read() as tx:
        assert list(await tx.scalars(select(IdempotencyKey.key))) == ["recent"]


async def test_a_refused_request_does_not_use_up_its_key(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now(), free_minutes=0)
    key = {**await log_in(client, email=user.email), "Idempotency-Key": "launch-1"}
    assert_error(await client.post(SESSIONS, json=BODY, headers=key), 402)
    await grant(db, email=user.email, usd="1", now=clock.now())
    assert (await client.post(SESSIONS, json=BODY, headers=key)).status_code == 201


async def test_a_key_that_is_not_visible_ascii_is_a_422(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock)
    for bad in ("x" * 256, "with space"):
        response = await client.post(SESSIONS, json=BODY, headers={**auth, "Idempotency-Key": bad})
        assert_error(response, 422, "invalid_idempotency_key")
    assert await _count(client, auth) == 0


async def test_two_replicas_racing_with_one_key_make_one_session(
    settings: Settings, clock: FakeClock, db: Database, client: httpx.AsyncClient
) -> None:
    """Two app instances (replicas) on one database, each sent the same request at once."""
    auth = await signed_in_user(client, db, clock=clock, plan="enterprise", credit_usd="50")
    key = {**auth, "Idempotency-Key": "double-click"}
    replicas = [create_app(state=AppState.build(settings, clock=clock, db=db), run_jobs=False)]
    replicas.append(create_app(state=AppState.build(settings, clock=clock, db=db), run_jobs=False))
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sizzle.test")
        for app in replicas
    ]
    try:
        answers = await asyncio.gather(
            *(c.post(SESSIONS, json=BODY, headers=key) for c in clients for _ in range(3))
        )
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert await _count(client, auth) == 1
