"""Reconciler bookkeeping on sessions: last seen running, checks missed in a row

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gpu_sessions") as batch_op:
        batch_op.add_column(sa.Column("last_seen_running_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("missing_checks", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("gpu_sessions") as batch_op:
        batch_op.drop_column("missing_checks")
        batch_op.drop_column("last_seen_running_ms")
