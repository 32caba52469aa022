"""Alembic environment: runs on the connection `sizzle.db.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from sizzle.db.models import Base

MIGRATION_LOCK_KEY = 7_301_994_001  # any fixed number; shared by every Sizzle process

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `sizzle db upgrade`")

if connection.dialect.name == "postgresql":
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
