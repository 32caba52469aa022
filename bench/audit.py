"""Benchmark: the operator's audit view over a large ledger, against raw-SQL floors.

    python bench/audit.py --entries 1000000 --database postgresql://postgres@127.0.0.1/sizzle_bench
    python bench/audit.py --entries 200000 --database sqlite:////tmp/audit-bench.db

It wants an EMPTY database of its own (a fresh PostgreSQL database, or a new SQLite file): it
migrates it, fills it, and at the end drops what it made (an Alembic downgrade on PostgreSQL;
the SQLite file is deleted). --keep leaves the data.

The view is the audit events and the ledger entries read as one list (`services/audit.py`),
newest first, with a count of all that match. The data: 1,000 users, N ledger entries spread
over 30 days, and N/10 audit events. Each query below is timed (best of --repeat), each with a
floor: the same page read from the ledger alone, the way one would without the union.

- the first page of everything, with its total;
- one user's first page;
- one action family (`auth.`), which leaves the ledger out altogether;
- a day's window.

It prints one JSON line per query: {"query", "seconds", "floor_seconds", "rows", "database"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

sys.path.insert(0, str(Path(__file__).parent))
from metering import _drop_everything, _is_empty, _remove_sqlite_files, async_url  # noqa: E402

from sizzle.db.database import Database  # noqa: E402
from sizzle.db.migrate import upgrade  # noqa: E402
from sizzle.db.models import AuditEvent, LedgerAccount, LedgerEntry, User  # noqa: E402
from sizzle.services import audit  # noqa: E402

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USERS = 1_000
BATCH = 10_000
ACTIONS = ("auth.sign_in", "auth.sign_in_failed", "key.created", "session.active")


async def _setup(db: Database, entries: int) -> list[str]:
    rng = random.Random(7)  # noqa: S311 - spread, not secrets
    user_ids = [f"{i:032x}" for i in range(USERS)]
    async with db.transaction() as tx:
        await tx.execute(
            insert(User),
            [
                {
                    "id": uid,
                    "email": f"bench{i}@example.com",
                    "password_hash": "!",
                    "plan": "free",
                    "is_admin": False,
                    "is_active": True,
                    "created_at": NOW - timedelta(days=31),
                }
                for i, uid in enumerate(user_ids)
            ],
        )
        platform = list(
            await tx.scalars(select(LedgerAccount.id).where(LedgerAccount.user_id.is_(None)))
        )
    debit, credit = platform[0], platform[1]
    span = int(timedelta(days=30).total_seconds())
    for start in range(0, entries, BATCH):
        rows = [
            {
                "idempotency_key": f"bench:{n}",
                "kind": "credit_grant",
                "debit_account_id": debit,
                "credit_account_id": credit,
                "amount": 1_000_000,
                "unit": "usd_micros",
                "user_id": user_ids[n % USERS],
                "created_at": NOW - timedelta(seconds=rng.randrange(span)),
            }
            for n in range(start, min(start + BATCH, entries))
        ]
        async with db.transaction() as tx:
            await tx.execute(insert(LedgerEntry), rows)
    for start in range(0, entries // 10, BATCH):
        rows = [
            {
                "created_at": NOW - timedelta(seconds=rng.randrange(span)),
                "action": ACTIONS[n % len(ACTIONS)],
                "actor": f"user:{user_ids[n % USERS]}",
                "user_id": user_ids[n % USERS],
                "ip": "203.0.113.7",
                "user_agent": "bench",
            }
            for n in range(start, min(start + BATCH, entries // 10))
        ]
        async with db.transaction() as tx:
            await tx.execute(insert(AuditEvent), rows)
    async with db.engine.begin() as connection:
        await connection.execute(text("ANALYZE"))
    return user_ids


async def _best(repeat: int, work: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = await work()
        best = min(best, time.perf_counter() - started)
    return best, rows


async def run(url: str, entries: int, *, repeat: int, keep: bool) -> list[dict[str, Any]]:
    db = Database(url)
    results: list[dict[str, Any]] = []
    try:
        await upgrade(db)
        if not await _is_empty(db):
            raise SystemExit("this benchmark wants an empty database of its own: it has users")
        try:
            user_ids = await _setup(db, entries)
            one_user = user_ids[42]
            day = (NOW - timedelta(days=3), NOW - timedelta(days=2))
            cases: list[tuple[str, audit.AuditFilter, str, dict[str, Any]]] = [
                (
                    "first page, all",
                    audit.AuditFilter(),
                    "SELECT count(*) FROM ledger_entries",
                    {},
                ),
                (
                    "first page, one user",
                    audit.AuditFilter(user_id=one_user),
                    "SELECT count(*) FROM ledger_entries WHERE user_id = :u",
                    {"u": one_user},
                ),
                (
                    "first page, auth.",
                    audit.AuditFilter(action="auth."),
                    "SELECT count(*) FROM audit_events WHERE action LIKE 'auth.%'",
                    {},
                ),
                (
                    "first page, one day",
                    audit.AuditFilter(since=day[0], until=day[1]),
                    "SELECT count(*) FROM ledger_entries "
                    "WHERE created_at >= :a AND created_at < :b",
                    {"a": day[0], "b": day[1]},
                ),
            ]
            for name, where, floor_count, params in cases:

                async def view(where: audit.AuditFilter = where) -> int:
                    async with db.read() as tx:
                        rows, _total = await audit.search(tx, where, limit=50, offset=0)
                    return len(rows)

                async def floor(sql: str = floor_count, params: dict[str, Any] = params) -> int:
                    page = (
                        sql.replace("SELECT count(*)", "SELECT *")
                        + " ORDER BY created_at DESC LIMIT 50"
                    )
                    async with db.read() as tx:
                        await tx.execute(text(sql), params)
                        return len((await tx.execute(text(page), params)).all())

                seconds, rows = await _best(repeat, view)
                floor_seconds, _ = await _best(repeat, floor)
                results.append(
                    {
                        "query": name,
                        "entries": entries,
                        "seconds": round(seconds, 4),
                        "floor_seconds": round(floor_seconds, 4),
                        "rows": rows,
                        "database": "postgresql" if db.is_postgres else "sqlite",
                    }
                )
        finally:
            if not keep and db.is_postgres:
                await _drop_everything(db)
    finally:
        await db.dispose()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--database", required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    url = async_url(args.database)
    try:
        for line in asyncio.run(run(url, args.entries, repeat=args.repeat, keep=args.keep)):
            print(json.dumps(line))
    finally:
        if not args.keep and url.startswith("sqlite"):
            _remove_sqlite_files(url)


if __name__ == "__main__":
    main()
