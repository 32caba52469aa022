"""Benchmark: one set-based metering pass over N active sessions, against a raw-SQL floor.

    python bench/metering.py --sessions 100000 --database postgresql://postgres@127.0.0.1/postgres
    python bench/metering.py --sessions 10000 --database sqlite+aiosqlite:///tmp/bench.db

It makes a database of its own and cleans up by dropping it: on PostgreSQL the URL only names
the server to connect to (any database there): the benchmark creates `sizzle_metering_<random>`
beside it and ends with DROP DATABASE; a SQLite URL names a file that must not exist yet, which
it creates and deletes at the end. It never downgrades (undoing the migrations row by row is
slow at this size and not what is measured). Pass --keep to leave the database behind for a
look with psql; its name goes to stderr.

Each run:

1. sets up, set-based: N users (executemany, in batches), and from them with INSERT ... SELECT
   their credit, free-minute and (empty) Sizzle Lab minute accounts, a funded credit balance
   with the matching grant entries (so the ledger balances), and one active session each with
   exactly one minute due at `now` (active since now - 30 s, nothing charged yet); then
   ANALYZE, as autovacuum would have;
2. times the floor: ONE INSERT ... SELECT writing N session-shaped rows into ledger_entries
   (unique keys, the same four foreign keys filled in), committed; it runs first, so the
   pass below writes into the larger table;
3. times ONE call of `charge_due_minutes(tx, now=...)` in one transaction, committed, and
   checks that it wrote exactly N minute entries and advanced every session to minute 1.

It prints one JSON line: {"sessions", "seconds", "floor_seconds", "database", "total_seconds"}
(total: the whole run, creating and dropping the database included); with --repeat R the data
is recreated R times and the best of each figure is kept. --profile prints the time
of each SQL statement of the pass to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BindParameter, bindparam, event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sizzle.clock import to_ms
from sizzle.db.database import Database
from sizzle.db.migrate import upgrade
from sizzle.db.models import User, UTCDateTime
from sizzle.services import ledger
from sizzle.services.metering import charge_due_minutes

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PRICE = 150_000  # $0.15 a minute, the starter tier
FUNDED = 10_000_000  # $10 of credit each
TABLES = (
    "ledger_entries",
    "session_events",
    "provider_instances",
    "demo_instances",
    "gpu_sessions",
)


def async_url(url: str) -> str:
    """postgresql://... -> postgresql+asyncpg://...; SQLAlchemy URLs pass through."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


async def _empty(db: Database) -> None:
    """Remove every row this benchmark wrote; platform accounts back to zero."""
    async with db.transaction() as tx:
        if db.is_postgres:
            await tx.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES:
                await tx.execute(text(f"DELETE FROM {table}"))
        await tx.execute(text("DELETE FROM ledger_accounts WHERE user_id IS NOT NULL"))
        await tx.execute(text("DELETE FROM users"))
        await tx.execute(text("UPDATE ledger_accounts SET balance = 0"))
    if db.is_postgres:
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))


async def _setup(db: Database, n: int) -> None:
    now_ms = to_ms(NOW)
    user_ids = [uuid.uuid4().hex for _ in range(n)]
    async with db.transaction() as tx:
        for start in range(0, n, 10_000):
            await tx.execute(
                insert(User),
                [
                    {
                        "id": uid,
                        "email": f"bench-{uid}@example.com",
                        "name": None,
                        "password_hash": "bench-not-a-real-hash",
                        "plan": "free",
                        "is_admin": False,
                        "is_active": True,
                        "created_at": NOW,
                    }
                    for uid in user_ids[start : start + 10_000]
                ],
            )
        for kind, unit in (
            ("credit", ledger.USD),
            ("free_minutes", ledger.MINUTES),
            ("included_minutes", ledger.MINUTES),
        ):
            await tx.execute(
                text(
                    "INSERT INTO ledger_accounts (name, user_id, kind, unit, balance) "
                    "SELECT 'user:' || id || ':' || :kind, id, :kind, :unit, :balance FROM users"
                ),
                {"kind": kind, "unit": unit, "balance": FUNDED if kind == "credit" else 0},
            )
        grants_id = await ledger.account_id(tx, ledger.GRANTS)
        await tx.execute(
            text(
                "INSERT INTO ledger_entries (idempotency_key, kind, debit_account_id, "
                "credit_account_id, amount, unit, user_id, memo, created_at) "
                "SELECT 'bench:grant:' || a.user_id, 'credit_grant', :grants, a.id, :amount, "
                ":unit, a.user_id, 'bench credit', :now FROM ledger_accounts a "
                "WHERE a.kind = 'credit' AND a.user_id IS NOT NULL"
            ).bindparams(_now()),
            {"grants": grants_id, "amount": FUNDED, "unit": ledger.USD, "now": NOW},
        )
        await tx.execute(
            text("UPDATE ledger_accounts SET balance = balance - :total WHERE id = :id"),
            {"total": FUNDED * n, "id": grants_id},
        )
        # Session ids are derived from user ids so one INSERT ... SELECT makes them all.
        await tx.execute(
            text(
                "INSERT INTO gpu_sessions (id, user_id, tier, status, provider, instance_id, "
                "gpu_type, gpu_count, price_micros_per_minute, upstream_micros_per_hour, "
                "charged_minutes, active_ms_before, active_since_ms, created_at, ready_at, "
                "started_at) "
                "SELECT 's' || SUBSTR(id, 2), id, 'starter', 'active', 'demo', "
                "'bench-' || id, 'RTX 4090', 1, :price, 0, 0, 0, :since, :now, :now, :now "
                "FROM users"
            ).bindparams(_now()),
            {"price": PRICE, "since": now_ms - 30_000, "now": NOW},
        )
    if db.is_postgres:
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
    else:
        async with db.transaction() as tx:
            await tx.execute(text("ANALYZE"))


def _now() -> BindParameter[datetime]:
    return bindparam("now", type_=UTCDateTime)


async def _time_floor(db: Database, n: int) -> float:
    """ONE statement writing N ledger rows shaped like minute charges, committed."""
    async with db.transaction() as tx:
        debit = await ledger.account_id(tx, ledger.GRANTS)
        credit = await ledger.account_id(tx, ledger.REVENUE)
    statement = text(
        "INSERT INTO ledger_entries (idempotency_key, kind, debit_account_id, "
        "credit_account_id, amount, unit, user_id, session_id, minute, created_at) "
        "SELECT 'floor:' || s.id || ':minute:1', 'floor_minute', :debit, :credit, "
        "s.price_micros_per_minute, 'usd_micros', s.user_id, s.id, 1, :now FROM gpu_sessions s"
    ).bindparams(_now())
    started = time.perf_counter()
    async with db.transaction() as tx:
        written = await tx.execute(statement, {"debit": debit, "credit": credit, "now": NOW})
    seconds = time.perf_counter() - started
    rows = getattr(written, "rowcount", -1)
    assert rows == n, f"the floor wrote {rows} rows, not {n}"
    return seconds


class _StatementTimer:
    """With --profile: the wall time of each SQL statement the pass sends."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.rows: list[tuple[float, str]] = []
        self._started: list[float] = []

    def __enter__(self) -> _StatementTimer:
        event.listen(self.db.engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(self.db.engine.sync_engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.db.engine.sync_engine, "before_cursor_execute", self._before)
        event.remove(self.db.engine.sync_engine, "after_cursor_execute", self._after)

    def _before(self, *_args: Any) -> None:
        self._started.append(time.perf_counter())

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        elapsed = time.perf_counter() - self._started.pop()
        self.rows.append((elapsed, " ".join(statement.split())[:110]))

    def report(self) -> None:
        for elapsed, statement in self.rows:
            print(f"  {elapsed * 1000:9.1f} ms  {statement}", file=sys.stderr)


async def _time_pass(db: Database, n: int, *, profile: bool) -> float:
    timer = _StatementTimer(db)
    with timer if profile else contextlib.nullcontext():
        started = time.perf_counter()
        async with db.transaction() as tx:
            result = await charge_due_minutes(tx, now=NOW)
        seconds = time.perf_counter() - started
    if profile:
        print(f"pass over {n} sessions: {seconds:.3f} s", file=sys.stderr)
        timer.report()
    assert result.minutes_charged == n, f"the pass charged {result.minutes_charged}, not {n}"
    assert not result.starved_session_ids, "a funded session was starved"
    async with db.transaction() as tx:
        entries = await tx.scalar(
            text("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'session_minute' AND minute = 1")
        )
        charged = await tx.scalar(
            text("SELECT COUNT(*) FROM gpu_sessions WHERE charged_minutes = 1")
        )
        revenue = await tx.scalar(
            text("SELECT balance FROM ledger_accounts WHERE name = :name"),
            {"name": ledger.REVENUE},
        )
    assert entries == n, f"{entries} minute entries written, not {n}"
    assert charged == n, f"{charged} sessions advanced to minute 1, not {n}"
    assert revenue == n * PRICE, f"revenue is {revenue}, not {n * PRICE}"
    return seconds


async def _warm(db: Database) -> None:
    """Open the pooled connection and the pass's scratch table, as a running server has."""
    async with db.transaction() as tx:
        await charge_due_minutes(tx, now=NOW)


@contextlib.asynccontextmanager
async def _own_database(url: str, *, keep: bool) -> AsyncIterator[str]:
    """The URL of a database made for this run, dropped (or its file deleted) afterwards."""
    if make_url(url).get_backend_name() == "sqlite":
        path = Path(make_url(url).database or "")
        if not make_url(url).database or path.exists():
            raise SystemExit(f"give the benchmark a new SQLite file of its own: {path} exists")
        try:
            yield url
        finally:
            if keep:
                print(f"kept {path}", file=sys.stderr)
            else:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = f"sizzle_metering_{uuid.uuid4().hex[:12]}"
    server = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(url).set(database=name).render_as_string(hide_password=False)
        finally:
            if keep:
                print(f"kept database {name}", file=sys.stderr)
            else:
                async with server.connect() as connection:
                    # FORCE: a connection the run left open must not keep the database alive.
                    await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await server.dispose()


async def _measure(url: str, n: int, *, repeat: int, profile: bool) -> dict[str, Any]:
    db = Database(url)
    try:
        await upgrade(db)
        best_pass = best_floor = float("inf")
        for attempt in range(repeat):
            if attempt:
                await _empty(db)
            await _warm(db)  # before the data: nothing is due yet
            await _setup(db, n)
            best_floor = min(best_floor, await _time_floor(db, n))
            best_pass = min(best_pass, await _time_pass(db, n, profile=profile))
        return {
            "sessions": n,
            "seconds": round(best_pass, 4),
            "floor_seconds": round(best_floor, 4),
            "database": "postgresql" if db.is_postgres else "sqlite",
        }
    finally:
        await db.dispose()


async def run(url: str, n: int, *, repeat: int, profile: bool, keep: bool) -> dict[str, Any]:
    started = time.perf_counter()
    async with _own_database(url, keep=keep) as own_url:
        figures = await _measure(own_url, n, repeat=repeat, profile=profile)
    return {**figures, "total_seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, required=True, help="active sessions (and users)")
    parser.add_argument(
        "--database",
        required=True,
        help="PostgreSQL: a URL to the server (a database is made there and dropped); "
        "SQLite: a file that does not exist yet",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs; the best is kept")
    parser.add_argument("--profile", action="store_true", help="statement times to stderr")
    parser.add_argument("--keep", action="store_true", help="leave the tables and data behind")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.repeat < 1:
        parser.error("--sessions and --repeat must be at least 1")
    url = async_url(args.database)
    if make_url(url).get_backend_name() not in ("postgresql", "sqlite"):
        parser.error("--database must be a PostgreSQL or SQLite URL")
    figures = asyncio.run(
        run(url, args.sessions, repeat=args.repeat, profile=args.profile, keep=args.keep)
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
