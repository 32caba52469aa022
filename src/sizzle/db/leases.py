"""Leases: which process is working on a session (or running a job) right now.

Some work has provider calls between its database steps (launching a session, checking a
launch, releasing a GPU, a reconciler round), so no transaction can span it, and a row lock
ends with the first commit. A lease is a PostgreSQL session-level advisory lock, held on a
connection of its own (in autocommit: no transaction stays open) for as long as the work runs.
It needs no schema, and it cannot outlive its holder: when a process dies, PostgreSQL drops its
connection and the lock with it, so there is no expiry to tune and no stale lease to steal.

On SQLite one process runs every job; its leases are kept in that process's memory, which
still keeps an API request and a job of the same process off the same session.

Rule: never wait for a lease while holding a database lock (a row lock, the billing lock), or
two processes could wait on each other; `try_take` inside a transaction is fine.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from sizzle.db.database import Database

# The first of the two int4 keys of every lease: apart from the single-bigint advisory locks
# (billing, migrations) and from anyone else's two-key locks.
LEASE_SPACE = 7_301_994
WAIT_POLL_SECONDS = 0.05

_local_leases: weakref.WeakKeyDictionary[Database, set[str]] = weakref.WeakKeyDictionary()


def session_lease(session_id: str) -> str:
    """The lease of every provider-facing step on one session: launch, readiness, pause,
    resume, release, and the reconciler's repairs."""
    return f"session:{session_id}"


def job_lease(job: str) -> str:
    """The lease of a job that must run in one process at a time (the reconciler)."""
    return f"job:{job}"


def _key(name: str) -> int:
    """A stable int4 for a lease name (a rare collision only makes one of two wait a tick)."""
    digest = hashlib.blake2b(name.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


class Leases:
    """The leases one holder took (one connection on PostgreSQL); all given back at its end."""

    def __init__(self, connection: AsyncConnection | None, local: set[str]) -> None:
        self._connection = connection
        self._local = local
        self.held: set[str] = set()

    async def try_take(self, name: str) -> bool:
        """Take the lease if nobody holds it; False at once if somebody does."""
        if name in self.held:
            return True
        if self._connection is None:
            if name in self._local:
                return False
            self._local.add(name)
        else:
            taken = await self._connection.scalar(
                text("SELECT pg_try_advisory_lock(:space, :key)"),
                {"space": LEASE_SPACE, "key": _key(name)},
            )
            if not taken:
                return False
        self.held.add(name)
        return True

    async def take(self, name: str, *, timeout_seconds: float) -> bool:
        """Take the lease, waiting up to `timeout_seconds` (real time) for its holder."""
        deadline = time.monotonic() + timeout_seconds
        while not await self.try_take(name):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(WAIT_POLL_SECONDS)
        return True

    async def give_back(self, name: str) -> None:
        if name not in self.held:
            return
        self.held.discard(name)
        if self._connection is None:
            self._local.discard(name)
        else:
            await self._connection.execute(
                text("SELECT pg_advisory_unlock(:space, :key)"),
                {"space": LEASE_SPACE, "key": _key(name)},
            )


@asynccontextmanager
async def lease_holder(db: Database) -> AsyncIterator[Leases]:
    """A holder to take leases with; whatever it still holds is given back when it ends."""
    if not db.is_postgres:
        local = Leases(None, _local_leases.setdefault(db, set()))
        try:
            yield local
        finally:
            for name in list(local.held):
                await local.give_back(name)
        return
    async with db.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        leases = Leases(autocommit, set())
        try:
            yield leases
        finally:
            if leases.held:
                try:
                    await autocommit.execute(text("SELECT pg_advisory_unlock_all()"))
                except BaseException:
                    # A pooled connection must never keep a lease: closing it drops them all.
                    await connection.invalidate()
                    raise


@asynccontextmanager
async def lease(db: Database, name: str, *, wait_seconds: float = 0) -> AsyncIterator[bool]:
    """Hold one lease for the block: True if taken (within `wait_seconds`), else False.

    Between tries the waiter holds no connection: many requests waiting on one busy session
    must not take the pool from the holder, which needs a connection to finish its work."""
    deadline = time.monotonic() + wait_seconds
    while True:
        async with lease_holder(db) as leases:
            if await leases.try_take(name):
                yield True  # given back when the holder ends, however the block ends
                return
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(WAIT_POLL_SECONDS)
    yield False
