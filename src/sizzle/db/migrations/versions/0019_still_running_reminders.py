"""How often a user is told a session is still running

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE on SQLite too: a batch rebuild of users would drop the table, which its
    # referencing rows forbid while foreign keys are enforced
    op.add_column(
        "users",
        sa.Column("still_running_every_hours", sa.Integer(), nullable=False, server_default="1"),
    )


def downgrade() -> None:
    op.drop_column("users", "still_running_every_hours")
