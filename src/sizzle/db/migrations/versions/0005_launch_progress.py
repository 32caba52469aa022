"""Launch progress on sessions: the provider's phase and percent (a model download, say)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gpu_sessions") as batch_op:
        batch_op.add_column(sa.Column("progress_phase", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("progress_percent", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gpu_sessions") as batch_op:
        batch_op.drop_column("progress_percent")
        batch_op.drop_column("progress_phase")
