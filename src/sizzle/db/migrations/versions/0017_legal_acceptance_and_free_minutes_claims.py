"""Legal acceptance and suspension reasons on users; addresses that had free minutes

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("terms_version", sa.String(length=200), nullable=True))
    op.add_column("users", sa.Column("terms_accepted_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("suspension_reason", sa.String(length=32), nullable=True))
    op.add_column("users", sa.Column("suspension_note", sa.String(length=500), nullable=True))
    op.create_table(
        "free_minutes_claims",
        sa.Column("address_digest", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address_digest"),
    )


def downgrade() -> None:
    op.drop_table("free_minutes_claims")
    # ALTER TABLE ... DROP COLUMN, on SQLite too (3.35+): a batch rebuild of users would drop
    # the table, which its referencing rows forbid while foreign keys are enforced
    for column in ("suspension_note", "suspension_reason", "terms_accepted_at", "terms_version"):
        op.drop_column("users", column)
