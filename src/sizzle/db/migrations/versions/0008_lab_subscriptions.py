"""Sizzle Lab: subscriptions, each user's included-minutes account, and the platform
accounts included minutes and subscription payments move through

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PLATFORM_ACCOUNTS = {
    "platform:included_minutes_issued": "minutes",
    "platform:included_minutes_spent": "minutes",
    "platform:included_minutes_expired": "minutes",
    "platform:subscriptions": "usd_micros",
}


def upgrade() -> None:
    op.create_table(
        "lab_subscriptions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("price_micros", sa.BigInteger(), nullable=False),
        sa.Column("included_minutes", sa.Integer(), nullable=False),
        sa.Column("checkout_session_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("current_period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("minutes_expire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("checkout_session_id"),
        sa.UniqueConstraint("stripe_subscription_id"),
    )
    op.create_index(
        "ix_lab_subscriptions_user_id_created_at", "lab_subscriptions", ["user_id", "created_at"]
    )
    op.create_index(
        "ix_lab_subscriptions_minutes_expire_at", "lab_subscriptions", ["minutes_expire_at"]
    )
    op.add_column(
        "gpu_sessions",
        sa.Column("lab_covered", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    accounts = sa.table(
        "ledger_accounts",
        sa.column("name", sa.String),
        sa.column("kind", sa.String),
        sa.column("unit", sa.String),
        sa.column("balance", sa.BigInteger),
    )
    op.bulk_insert(
        accounts,
        [
            {"name": name, "kind": name.split(":")[1], "unit": unit, "balance": 0}
            for name, unit in PLATFORM_ACCOUNTS.items()
        ],
    )
    # every existing user gets an (empty) included-minutes account, as new users do
    op.execute(
        sa.text(
            "INSERT INTO ledger_accounts (name, user_id, kind, unit, balance) "
            "SELECT :prefix || id || :suffix, id, 'included_minutes', 'minutes', 0 FROM users"
        ).bindparams(prefix="user:", suffix=":included_minutes")
    )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM ledger_accounts WHERE kind = 'included_minutes'"))
    op.execute(
        sa.text("DELETE FROM ledger_accounts WHERE name IN :names").bindparams(
            sa.bindparam("names", value=list(PLATFORM_ACCOUNTS), expanding=True)
        )
    )
    op.drop_column("gpu_sessions", "lab_covered")
    op.drop_index("ix_lab_subscriptions_minutes_expire_at", table_name="lab_subscriptions")
    op.drop_index("ix_lab_subscriptions_user_id_created_at", table_name="lab_subscriptions")
    op.drop_table("lab_subscriptions")
