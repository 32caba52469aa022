"""Idle auto-stop: each session's idle limit and last use, and session events by actor

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sessions made before this have no limit (None): they are never stopped for being idle.
    with op.batch_alter_table("gpu_sessions") as batch:
        batch.add_column(sa.Column("idle_minutes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("last_activity_ms", sa.BigInteger(), nullable=True))
    op.create_index("ix_session_events_actor_created_at", "session_events", ["actor", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_session_events_actor_created_at", table_name="session_events")
    with op.batch_alter_table("gpu_sessions") as batch:
        batch.drop_column("last_activity_ms")
        batch.drop_column("idle_minutes")
