"""How the Database talks to its server: reads on SQLite do not take the write lock, writes
do; PostgreSQL connections are not pinged at checkout, yet one the server closed is replaced
before a request can fail on it."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from tests.helpers import create_session, log_in, make_user


def _write_lock_is_free(db: Database) -> bool:
    """Whether another connection could take SQLite's write lock now (without waiting)."""
    other = sqlite3.connect(str(db.engine.url.database), timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()


async def test_on_sqlite_a_read_leaves_the_write_lock_and_a_write_takes_it_at_once(
    db: Database,
) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite's locking")
    async with db.read() as tx:
        await tx.execute(text("SELECT count(*) FROM users"))
        assert _write_lock_is_free(db)  # BEGIN (deferred)
    async with db.transaction() as tx:
        await tx.execute(text("SELECT count(*) FROM users"))
        assert not _write_lock_is_free(db)  # BEGIN IMMEDIATE, before any write
    assert _write_lock_is_free(db)


async def test_a_checkout_sends_no_ping(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    pings = []
    dialect = db.engine.dialect
    real_ping = dialect.do_ping
    monkeypatch.setattr(dialect, "do_ping", lambda conn: pings.append(1) or real_ping(conn))
    for _ in range(3):
        async with db.read() as tx:
            await tx.execute(text("SELECT 1"))
    assert pings == []


async def _server_closes_every_other_connection(db: Database) -> None:
    """As a restart or an operator's `pg_terminate_backend` would; waits (bounded) until the
    server has let them go."""
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    async with db.engine.connect() as admin:
        # autocommit: pg_stat_activity holds still within a transaction
        await admin.execution_options(isolation_level="AUTOCOMMIT")
        await admin.execute(text(f"SELECT pg_terminate_backend(pid) {others}"))  # noqa: S608
        async with asyncio.timeout(10):
            while await admin.scalar(text(f"SELECT count(*) {others}")):  # noqa: S608
                await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # a real socket: the pool's side reads the server's goodbye


@pytest.mark.postgres_only
async def test_after_the_server_closes_its_connections_the_next_requests_succeed(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now(), credit_usd="5")
    auth = await log_in(client, email=user.email)
    session_id = (await create_session(client, auth=auth, tier="starter"))["id"]

    async def read_it() -> int:
        return (await client.get(f"/api/v1/sessions/{session_id}", headers=auth)).status_code

    assert set(await asyncio.gather(*(read_it() for _ in range(8)))) == {200}  # several pooled
    pooled = db.engine.pool.checkedin()  # type: ignore[attr-defined]
    assert pooled >= 2
    await _server_closes_every_other_connection(db)
    assert await asyncio.gather(*(read_it() for _ in range(16))) == [200] * 16


@pytest.mark.postgres_only
async def test_on_postgresql_a_read_sends_no_begin_and_a_write_does(db: Database) -> None:
    # READ COMMITTED gives a read no common snapshot anyway: BEGIN/COMMIT are two round trips
    async def in_transaction(tx: Any) -> bool:
        await tx.execute(text("SELECT 1"))
        raw = await (await tx.connection()).get_raw_connection()
        return bool(raw.driver_connection.is_in_transaction())

    async with db.read() as tx:
        assert not await in_transaction(tx)
    async with db.transaction() as tx:
        assert await in_transaction(tx)
