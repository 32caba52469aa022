"""aiosqlite with one trip to its thread per statement.

aiosqlite runs every sqlite3 call on a thread of the connection's own, and each call is a trip
there and back: a queue put that wakes the thread, and a wake-up of the event loop when the
answer is ready. SQLAlchemy's adapter makes four such trips for each statement (make a cursor,
execute, fetch the rows, close the cursor), which on a short read cost more than SQLite's own
work. The cursor here does all four in one trip: it executes the statement and, on that same
trip, fetches up to `FIRST_ROWS` rows and closes the sqlite3 cursor once they are all read. A
larger result stays open on the thread and is fetched on later trips, so a result that is
streamed (`yield_per`) stays bounded in memory.

SQLAlchemy's aiosqlite adapter is used as it is; only the driver connection it wraps is ours
(`install` swaps the driver module its dialect connects through). It relies on
`aiosqlite.Connection._execute`, the way aiosqlite's own cursor reaches the thread; the
dependency is pinned below its next minor version for that reason. tests/test_sqlite_driver.py
checks the cursor against what aiosqlite's own gives; every SQLite test runs through it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy.ext.asyncio import AsyncEngine

FIRST_ROWS = 512  # rows fetched on the statement's own trip; more come on later trips

Row = Any
T = TypeVar("T")
Description = tuple[tuple[Any, ...], ...] | None


class _Outcome:
    """What one trip brings back from the thread: the sqlite3 cursor's state after it ran."""

    __slots__ = ("description", "rowcount", "lastrowid", "rows", "cursor")

    def __init__(self, cursor: sqlite3.Cursor, rows: list[Row], done: bool) -> None:
        self.description: Description = cursor.description
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid
        self.rows = rows
        # kept only while rows remain to be fetched
        self.cursor: sqlite3.Cursor | None = None if done else cursor


def _run(connection: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """On the connection's thread: run the statement and fetch its first rows; close the cursor
    unless more rows wait."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchmany(FIRST_ROWS) if cursor.description else []
        done = len(rows) < FIRST_ROWS
    except BaseException:
        cursor.close()
        raise
    if done:
        cursor.close()
    return _Outcome(cursor, rows, done)


def _fetch(cursor: sqlite3.Cursor, size: int | None) -> tuple[list[Row], bool]:
    """On the connection's thread: more rows (all of them when `size` is None); whether the
    cursor is done, and closed."""
    rows = cursor.fetchall() if size is None else cursor.fetchmany(size)
    done = size is None or len(rows) < size
    if done:
        cursor.close()
    return rows, done


def _close(cursor: sqlite3.Cursor) -> None:
    """On the connection's thread: let go of a result before its last row."""
    cursor.close()


class OneTripCursor:
    """The cursor SQLAlchemy's aiosqlite adapter drives, answering as aiosqlite's does."""

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self._open: sqlite3.Cursor | None = None  # a result with rows still on the thread
        self._rows: list[Row] = []
        self.description: Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _trip(self, sql: str, parameters: Any, *, many: bool) -> OneTripCursor:
        await self.close()  # a cursor that runs again drops what the last statement left
        outcome: _Outcome = await self._connection.on_thread(
            _run, self._connection._conn, sql, parameters, many
        )
        self.description, self.rowcount = outcome.description, outcome.rowcount
        self.lastrowid, self._rows, self._open = outcome.lastrowid, outcome.rows, outcome.cursor
        return self

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> OneTripCursor:
        return await self._trip(sql, () if parameters is None else parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> OneTripCursor:
        return await self._trip(sql, parameters, many=True)

    async def _more(self, size: int | None) -> None:
        if self._open is not None:
            rows, done = await self._connection.on_thread(_fetch, self._open, size)
            self._rows.extend(rows)
            if done:
                self._open = None

    async def fetchall(self) -> list[Row]:
        await self._more(None)
        rows, self._rows = self._rows, []
        return rows

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        wanted = self.arraysize if size is None else size
        if len(self._rows) < wanted:
            await self._more(wanted - len(self._rows))
        rows, self._rows = self._rows[:wanted], self._rows[wanted:]
        return rows

    async def fetchone(self) -> Row | None:
        rows = await self.fetchmany(1)
        return rows[0] if rows else None

    async def close(self) -> None:
        self._rows = []
        if self._open is not None:
            cursor, self._open = self._open, None
            await self._connection.on_thread(_close, cursor)


class _CursorOpening:
    """What `OneTripConnection.cursor()` answers: awaited, or entered with `async with`, as
    aiosqlite's cursor() is; neither is a trip to the thread."""

    def __init__(self, cursor: OneTripCursor) -> None:
        self._cursor = cursor

    def __await__(self) -> Any:
        return self._ready().__await__()

    async def _ready(self) -> OneTripCursor:
        return self._cursor

    async def __aenter__(self) -> OneTripCursor:
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        await self._cursor.close()


class OneTripConnection(aiosqlite.Connection):
    """aiosqlite's connection, with cursors that make one trip per statement."""

    def cursor(self) -> _CursorOpening:  # type: ignore[override]
        return _CursorOpening(OneTripCursor(self))

    async def on_thread(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` run on the connection's thread: one trip."""
        result: T = await self._execute(function, *args)  # type: ignore[no-untyped-call]
        return result


class _Driver:
    """Stands in for the aiosqlite module in SQLAlchemy's adapter: connects with
    `OneTripConnection`, exactly as `aiosqlite.connect` would with aiosqlite's own."""

    def __getattr__(self, name: str) -> Any:
        return getattr(aiosqlite, name)

    @staticmethod
    def connect(
        database: str | bytes | Path, *, iter_chunk_size: int = 64, **kwargs: Any
    ) -> OneTripConnection:
        location = database.decode() if isinstance(database, bytes) else str(database)
        return OneTripConnection(partial(sqlite3.connect, location, **kwargs), iter_chunk_size)


def install(engine: AsyncEngine) -> None:
    """Make `engine` (sqlite+aiosqlite) connect through one-trip cursors. Only this engine's
    dialect is changed: each engine's dialect has a driver adapter of its own."""
    adapter: Any = engine.sync_engine.dialect.dbapi
    if getattr(adapter, "aiosqlite", None) is None:
        raise TypeError(f"not an aiosqlite engine: {engine.url!r}")
    adapter.aiosqlite = _Driver()
