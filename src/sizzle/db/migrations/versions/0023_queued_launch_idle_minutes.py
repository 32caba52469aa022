"""A queued launch keeps the idle limit asked for, for the session it makes

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("launch_queue") as batch:
        batch.add_column(sa.Column("idle_minutes", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("launch_queue") as batch:
        batch.drop_column("idle_minutes")
