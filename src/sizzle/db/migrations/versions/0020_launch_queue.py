"""Queued launches: "tell me when it's free"

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "launch_queue",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("max_minutes", sa.Integer(), nullable=True),
        sa.Column("spend_cap_micros", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("launched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["gpu_sessions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_launch_queue_status_tier_created_at", "launch_queue", ["status", "tier", "created_at"]
    )
    op.create_index("ix_launch_queue_user_id_created_at", "launch_queue", ["user_id", "created_at"])
    op.create_index("ix_launch_queue_session_id", "launch_queue", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_launch_queue_session_id", table_name="launch_queue")
    op.drop_index("ix_launch_queue_user_id_created_at", table_name="launch_queue")
    op.drop_index("ix_launch_queue_status_tier_created_at", table_name="launch_queue")
    op.drop_table("launch_queue")
