"""The Database's two kinds of transaction."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from sizzle.db.database import Database


async def test_a_read_does_not_wait_behind_a_writer(db: Database) -> None:
    async with db.transaction() as writer:
        await writer.execute(text("UPDATE ledger_accounts SET balance = balance"))
        # The writer holds SQLite's write lock; a read that asked for it would wait the
        # 10 s busy timeout. A read transaction does not ask for it.
        async with asyncio.timeout(2), db.read() as reader:
            assert await reader.scalar(text("SELECT count(*) FROM users")) == 0
