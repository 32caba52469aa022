"""The SQLite driver's one-trip cursor: each statement is one trip to aiosqlite's thread, and
every result, error and cursor is what aiosqlite's own cursor would give."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from sizzle.db import sqlite_driver
from sizzle.db.database import Database
from sizzle.db.sqlite_driver import FIRST_ROWS, OneTripConnection

MANY = FIRST_ROWS * 2 + 7  # more rows than one trip fetches


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with db.transaction() as tx:
        await tx.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    try:
        yield db
    finally:
        await db.dispose()


class Trips:
    """Counts the calls made on aiosqlite's thread, and the sqlite3 cursors left open."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.open_cursors: set[Any] = set()
        real_execute = OneTripConnection._execute
        real_run, real_fetch = sqlite_driver._run, sqlite_driver._fetch
        real_close = sqlite_driver._close

        async def counted(connection: OneTripConnection, fn: Any, *args: Any) -> Any:
            self.count += 1
            return await real_execute(connection, fn, *args)

        def run(*args: Any) -> sqlite_driver._Outcome:
            outcome = real_run(*args)
            if outcome.cursor is not None:
                self.open_cursors.add(outcome.cursor)
            return outcome

        def fetch(cursor: Any, size: int | None) -> tuple[list[Any], bool]:
            rows, done = real_fetch(cursor, size)
            if done:
                self.open_cursors.discard(cursor)
            return rows, done

        def close(cursor: Any) -> None:
            real_close(cursor)
            self.open_cursors.discard(cursor)

        monkeypatch.setattr(OneTripConnection, "_execute", counted)
        monkeypatch.setattr(sqlite_driver, "_close", close)
        monkeypatch.setattr(sqlite_driver, "_run", run)
        monkeypatch.setattr(sqlite_driver, "_fetch", fetch)


async def _fill(db: Database, rows: int) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            text("INSERT INTO t (v) VALUES (:v)"), [{"v": f"v{i}"} for i in range(rows)]
        )


async def test_a_read_is_one_trip_to_the_thread(
    sqlite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(sqlite, 3)
    trips = Trips(monkeypatch)
    async with sqlite.read() as reader:
        assert (await reader.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all() == [
            "v0",
            "v1",
            "v2",
        ]
    # aiosqlite's own cursor made four: cursor, execute, fetchall, close
    assert trips.count == 1
    assert not trips.open_cursors


async def test_a_write_transaction_is_a_trip_per_statement_besides_begin_and_commit(
    sqlite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = Trips(monkeypatch)
    async with sqlite.transaction() as tx:
        inserted = await tx.execute(text("INSERT INTO t (v) VALUES ('a') RETURNING id"))
        assert inserted.scalar_one() == 1
        updated = await tx.execute(text("UPDATE t SET v = 'b' WHERE id = 1"))
        assert updated.rowcount == 1
    assert trips.count == 4  # BEGIN IMMEDIATE, two statements, COMMIT


async def test_large_results_arrive_whole_and_streamed(
    sqlite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(sqlite, MANY)
    trips = Trips(monkeypatch)
    async with sqlite.read() as reader:
        everything = (await reader.execute(text("SELECT id FROM t ORDER BY id"))).scalars().all()
    assert everything == list(range(1, MANY + 1))
    assert trips.count == 2  # the first rows with the statement, the rest on one more trip

    async with sqlite.engine.connect() as connection:
        streamed = await connection.stream(text("SELECT id FROM t ORDER BY id"))
        seen = [row.id async for row in streamed]
    assert seen == list(range(1, MANY + 1))
    assert not trips.open_cursors


async def test_a_stream_left_early_closes_its_cursor(
    sqlite: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(sqlite, MANY)
    trips = Trips(monkeypatch)
    async with sqlite.engine.connect() as connection:
        streamed = await connection.stream(text("SELECT id FROM t ORDER BY id"))
        first = [row.id for row in await streamed.fetchmany(3)]
        assert trips.open_cursors  # rows still wait on the thread
        await streamed.close()
    assert first == [1, 2, 3]
    assert not trips.open_cursors
    # the connection is fine for the next statement
    async with sqlite.read() as reader:
        assert await reader.scalar(text("SELECT count(*) FROM t")) == MANY


async def test_many_rows_written_at_once_are_counted(sqlite: Database) -> None:
    async with sqlite.engine.begin() as connection:
        written = await connection.execute(
            text("INSERT INTO t (v) VALUES (:v)"), [{"v": str(i)} for i in range(50)]
        )
        assert written.rowcount == 50
        last = await connection.execute(text("INSERT INTO t (v) VALUES ('last')"))
        assert last.lastrowid == 51


async def test_errors_are_sqlalchemys_and_leave_the_connection_usable(sqlite: Database) -> None:
    await _fill(sqlite, 1)
    with pytest.raises(IntegrityError):
        async with sqlite.transaction() as tx:
            await tx.execute(text("INSERT INTO t (v) VALUES ('v0')"))
    with pytest.raises(OperationalError, match="no such column"):
        async with sqlite.read() as reader:
            await reader.execute(text("SELECT missing_column FROM t"))
    async with sqlite.read() as reader:
        assert await reader.scalar(text("SELECT count(*) FROM t")) == 1


async def test_only_the_engine_it_is_installed_on_changes(sqlite: Database, tmp_path: Path) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    other = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    try:
        async with other.connect() as connection:
            raw = await connection.get_raw_connection()
            assert not isinstance(raw.driver_connection, OneTripConnection)
        async with sqlite.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            assert isinstance(raw.driver_connection, OneTripConnection)
    finally:
        await other.dispose()
