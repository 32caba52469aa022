"""User SSH keys: a user's own public keys, put on their instances next to Sizzle's

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_ssh_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "fingerprint", name="uq_user_ssh_keys_user_id_fingerprint"),
    )
    op.add_column("instance_keys", sa.Column("user_keys", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance_keys") as batch:
        batch.drop_column("user_keys")
    op.drop_table("user_ssh_keys")
