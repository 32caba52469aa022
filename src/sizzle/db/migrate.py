"""Alembic, driven from code: `sizzle db upgrade`, `sizzle serve` and the tests share it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from sizzle.db.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to `revision`; on PostgreSQL one process at a time (advisory lock)."""

    def _run(sync_connection: Any) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_connection
        command.upgrade(config, revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(_run)


async def is_current(db: Database) -> bool:
    """Whether the database is at the newest migration."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()

    def _current(sync_connection: Any) -> str | None:
        return MigrationContext.configure(sync_connection).get_current_revision()

    async with db.engine.connect() as connection:
        return await connection.run_sync(_current) == head
