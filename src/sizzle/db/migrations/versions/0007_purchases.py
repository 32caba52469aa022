"""Credit purchases through Stripe, refunds, auto-top-up, and the platform accounts they use

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ACCOUNTS = ("platform:stripe", "platform:bonuses")


def upgrade() -> None:
    op.create_table(
        "purchases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("package", sa.String(length=32), nullable=False),
        sa.Column("paid_micros", sa.BigInteger(), nullable=False),
        sa.Column("credit_micros", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False, server_default="checkout"),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("checkout_session_id", sa.String(length=255), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("checkout_session_id"),
    )
    op.create_index("ix_purchases_user_id_created_at", "purchases", ["user_id", "created_at"])
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("purchase_id", sa.String(length=32), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("bonus_micros", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stripe_refund_id", sa.String(length=255), nullable=True),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["purchase_id"], ["purchases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stripe_refund_id"),
    )
    op.create_index("ix_refunds_purchase_id", "refunds", ["purchase_id"])
    op.create_table(
        "auto_top_ups",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("threshold_micros", sa.BigInteger(), nullable=False),
        sa.Column("package", sa.String(length=32), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("payment_method_id", sa.String(length=255), nullable=True),
        sa.Column("card_label", sa.String(length=64), nullable=True),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("user_id"),
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
            {"name": name, "kind": name.split(":")[1], "unit": "usd_micros", "balance": 0}
            for name in ACCOUNTS
        ],
    )


def downgrade() -> None:
    op.execute(
        sa.text("DELETE FROM ledger_accounts WHERE name IN ('platform:stripe', 'platform:bonuses')")
    )
    op.drop_table("auto_top_ups")
    op.drop_index("ix_refunds_purchase_id", table_name="refunds")
    op.drop_table("refunds")
    op.drop_index("ix_purchases_user_id_created_at", table_name="purchases")
    op.drop_table("purchases")
