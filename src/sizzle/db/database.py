"""The Database: one async engine, SQLite tuned for safety, PostgreSQL for scale."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolResetState
from sqlalchemy.util import await_only

from sizzle.db import sqlite_driver
from sizzle.db.fair_pool import FairPool

SQLITE_BUSY_TIMEOUT_MS = 10_000
# A pooled PostgreSQL connection is replaced once this old, before a firewall or a proxy
# between here and the server forgets it.
POOL_RECYCLE_SECONDS = 1800
POOL_SIZE = 20  # database connections a process holds at most
READ_ONLY = "sizzle_read_only"  # execution option of `Database.read()` connections


class Database:
    """Owns the engine and hands out transactions; the caller of `transaction()` owns the commit."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        in_memory = self.is_sqlite and parsed.database in (None, "", ":memory:")
        if self.is_sqlite and not in_memory:
            _make_private_sqlite_file(Path(str(parsed.database)))
        # bound parameters stay out of logs and error messages: they hold password hashes
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        # Up to POOL_SIZE connections, all kept: an overflow connection is closed when handed
        # back, so with a small pool most requests beyond it paid for a new connection (on
        # SQLite a new thread and four PRAGMAs).
        # Waiting checkouts are served first come, first served (db/fair_pool.py).
        if not in_memory:  # which is one connection
            kwargs.update(pool_size=POOL_SIZE, max_overflow=0, poolclass=FairPool)
        if self.is_sqlite:
            # the pool's rollback of every returned connection is a hop to aiosqlite's thread,
            # usually after a rollback that already ended the transaction: `_tune_sqlite`
            # rolls back only a transaction still open
            kwargs.update(pool_reset_on_return=None)
        else:
            # No pre-ping: it costs every checkout round trips (asyncpg's: BEGIN, ping,
            # ROLLBACK); a connection the server closed is refused at checkout instead.
            kwargs.update(pool_recycle=POOL_RECYCLE_SECONDS)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            if parsed.get_driver_name() == "aiosqlite":
                sqlite_driver.install(self.engine)
            _tune_sqlite(self.engine)
        else:
            _refuse_closed_connections(self.engine)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        reading: dict[str, Any] = {READ_ONLY: True}
        if self.is_postgres:
            # Under READ COMMITTED each statement reads its own snapshot, in a transaction or
            # not: BEGIN and COMMIT would only add two round trips to every read.
            reading["isolation_level"] = "AUTOCOMMIT"
        self._reader = async_sessionmaker(
            self.engine.execution_options(**reading), expire_on_commit=False
        )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session that only reads, one consistent snapshot per statement: no BEGIN and no
        COMMIT on either database (on PostgreSQL each statement under READ COMMITTED; on
        SQLite each statement its own read, which never takes the write lock, so it never
        waits behind a writer such as a long metering pass). What must agree with each other
        is read in one statement. Nothing is committed."""
        async with self._reader() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def _make_private_sqlite_file(path: Path) -> None:
    """The SQLite file made (empty) before SQLite opens it, readable by its owner only, in a
    folder only its owner may enter; SQLite gives the -wal and -shm it makes the file's mode.
    Files an older Sizzle made are narrowed too."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            file.chmod(0o600)


def _refuse_closed_connections(engine: AsyncEngine) -> None:
    """Replace, at checkout, a pooled connection that the server has closed (a restart,
    `pg_terminate_backend`, an idle timeout): the driver saw the server hang up, so this costs
    no round trip. A connection that died silently fails its first statement instead, and
    SQLAlchemy then replaces every connection pooled before that moment."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        is_closed = getattr(getattr(dbapi_connection, "driver_connection", None), "is_closed", None)
        if callable(is_closed) and is_closed():
            raise DisconnectionError("the server closed this connection")


def _tune_sqlite(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, foreign keys, and BEGIN IMMEDIATE so writers queue instead of failing
    (reads begin nothing: see `Database.read`).

    A deferred transaction that reads and then writes can fail at once with "database is
    locked" when another connection wrote in between; taking the write lock up front avoids it.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # A read begins nothing, so the rollback SQLAlchemy asks for when a read ends (or a pooled
    # connection is handed out again) usually has nothing to undo, yet each was a hop to
    # aiosqlite's thread. SQLAlchemy skips the rollback of a connection in "autocommit mode":
    # for SQLite that is exactly when it says no transaction is open.
    dialect = engine.sync_engine.dialect
    dialect.skip_autocommit_rollback = True
    dialect.detect_autocommit_setting = _no_transaction_open  # type: ignore[method-assign,assignment]

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, record: Any, state: PoolResetState) -> None:
        # as the pool's own reset would, but not when SQLite says no transaction is open
        driver = getattr(record, "driver_connection", None)
        if state.asyncio_safe and (driver is None or driver.in_transaction):
            dbapi_connection.rollback()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY, False):
            return  # a read: each statement reads on its own (a BEGIN would be one more hop)
        # Straight to aiosqlite: one hop to its thread, where exec_driver_sql would take three
        # (cursor, execute, close), on every transaction.
        driver = connection.connection.driver_connection
        await_only(driver.execute("BEGIN IMMEDIATE"))


def _no_transaction_open(dbapi_connection: Any) -> bool:
    """Whether SQLite has no transaction open on this (aiosqlite) connection: a rollback would
    undo nothing. Read on the connection itself, with no hop to its thread."""
    return not dbapi_connection.driver_connection.in_transaction
