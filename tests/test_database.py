"""The Database's two kinds of transaction; the migrations against the models."""

from __future__ import annotations

import asyncio
from typing import Any

import aiosqlite
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.migrate import alembic_config
from sizzle.db.models import Base
from tests.helpers import make_user


async def test_a_read_does_not_wait_behind_a_writer(db: Database) -> None:
    async with db.transaction() as writer:
        await writer.execute(text("UPDATE ledger_accounts SET balance = balance"))
        # The writer holds SQLite's write lock; a read that asked for it would wait the
        # 10 s busy timeout. A read transaction does not ask for it.
        async with asyncio.timeout(2), db.read() as reader:
            assert await reader.scalar(text("SELECT count(*) FROM users")) == 0


async def test_a_connection_returned_inside_a_transaction_is_rolled_back(db: Database) -> None:
    # On SQLite the pool's own rollback on return is off (it cost a hop to aiosqlite's thread
    # after nearly every transaction); a transaction still open at return must end there all
    # the same, or its lock would outlive it.
    def begin_behind_sqlalchemy(sync_connection: Any) -> None:
        cursor = sync_connection.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE" if db.is_sqlite else "BEGIN")
        cursor.execute("UPDATE ledger_accounts SET balance = balance")
        cursor.close()

    async with db.engine.connect() as connection:
        await connection.run_sync(begin_behind_sqlalchemy)
    async with asyncio.timeout(2), db.transaction() as writer:  # not the busy timeout's 10 s
        await writer.execute(text("UPDATE ledger_accounts SET balance = balance"))


async def test_a_failed_transaction_is_undone_and_lets_go_of_its_lock(
    db: Database, clock: FakeClock
) -> None:
    # SQLite's rollbacks are skipped when no transaction is open (see _tune_sqlite): one that
    # is open must still be rolled back.
    user = await make_user(db, now=clock.now())
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute(
                text("UPDATE users SET name = 'changed' WHERE id = :id"), {"id": user.id}
            )
            raise RuntimeError("the request failed half way")
    async with asyncio.timeout(2), db.transaction() as tx:  # not the busy timeout's 10 s
        assert (
            await tx.scalar(text("SELECT name FROM users WHERE id = :id"), {"id": user.id}) is None
        )


async def test_a_read_on_sqlite_ends_without_a_rollback(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite: a rollback there is a hop to aiosqlite's thread")
    rollbacks = 0
    rollback = aiosqlite.Connection.rollback

    async def counted(self: aiosqlite.Connection) -> None:
        nonlocal rollbacks
        rollbacks += 1
        await rollback(self)

    monkeypatch.setattr(aiosqlite.Connection, "rollback", counted)
    for _ in range(3):
        async with db.read() as tx:
            await tx.scalar(text("SELECT count(*) FROM users"))
    assert rollbacks == 0


def _index_leads(sync_connection: Any) -> dict[str, set[str]]:
    """Each table's columns that some index, unique constraint or primary key begins with."""
    inspector = inspect(sync_connection)
    leads: dict[str, set[str]] = {}
    for table in inspector.get_table_names():
        heads = [index["column_names"] for index in inspector.get_indexes(table)]
        heads += [unique["column_names"] for unique in inspector.get_unique_constraints(table)]
        heads.append(inspector.get_pk_constraint(table)["constrained_columns"])
        leads[table] = {str(columns[0]) for columns in heads if columns}
    return leads


async def _migrate_to(db: Database, revision: str, *, down: bool) -> None:
    def _run(sync_connection: Any) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_connection
        (command.downgrade if down else command.upgrade)(config, revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(_run)


async def test_the_models_match_the_migrations(db: Database) -> None:
    def _differences(sync_connection: Any) -> list[Any]:
        context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as connection:
        assert await connection.run_sync(_differences) == []


async def test_every_foreign_key_column_begins_an_index(db: Database) -> None:
    # Without one, deleting a referenced row scans the referencing table (per row deleted).
    async with db.engine.connect() as connection:
        leads = await connection.run_sync(_index_leads)
    unindexed = [
        f"{table.name}.{key.parent.name}"
        for table in Base.metadata.sorted_tables
        for key in table.foreign_keys
        if key.parent.name not in leads[table.name]
    ]
    assert unindexed == []


async def test_the_ledger_index_migration_goes_down_and_up(db: Database) -> None:
    names = {"debit_account_id", "credit_account_id", "session_id"}
    try:
        await _migrate_to(db, "0010", down=True)
        async with db.engine.connect() as connection:
            assert not names & (await connection.run_sync(_index_leads))["ledger_entries"]
    finally:
        await _migrate_to(db, "head", down=False)
    async with db.engine.connect() as connection:
        assert names <= (await connection.run_sync(_index_leads))["ledger_entries"]


async def test_the_idempotency_keys_migration_goes_down_and_up(db: Database) -> None:
    def _tables(sync_connection: Any) -> set[str]:
        return set(inspect(sync_connection).get_table_names())

    try:
        await _migrate_to(db, "0015", down=True)
        async with db.engine.connect() as connection:
            assert "idempotency_keys" not in await connection.run_sync(_tables)
    finally:
        await _migrate_to(db, "head", down=False)
    async with db.engine.connect() as connection:
        assert "idempotency_keys" in await connection.run_sync(_tables)


async def test_the_legal_migration_goes_down_and_up_with_accounts_in_it(
    db: Database, clock: FakeClock
) -> None:
    def _user_columns(sync_connection: Any) -> set[str]:
        return {column["name"] for column in inspect(sync_connection).get_columns("users")}

    await make_user(db, now=clock.now())  # rows that reference users: no table rebuild
    try:
        await _migrate_to(db, "0016", down=True)
        async with db.engine.connect() as connection:
            assert "terms_version" not in await connection.run_sync(_user_columns)
    finally:
        await _migrate_to(db, "head", down=False)
    async with db.engine.connect() as connection:
        assert "terms_version" in await connection.run_sync(_user_columns)
