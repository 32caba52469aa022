"""The monthly budget: an optional cap on what GPU minutes may cost in credit in a calendar
month (UTC), and each user's spend per month, kept by metering next to its ledger entries

Existing spend is counted from the ledger: each credit `session_minute` in the month it was
charged, less each refund of one in the month of the charge it gives back.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

# The month (UTC, 'YYYY-MM') of an entry's created_at, per dialect (SQLite keeps naive UTC).
_MONTH = {
    "sqlite": "strftime('%Y-%m', {column})",
    "postgresql": "to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM')",
}

# Credit charges, and refunds by their charge's month; no input, only the constants above.
_BACKFILL = """
INSERT INTO monthly_spend (user_id, month, spent_micros)
SELECT user_id, month, SUM(amount) FROM (
    SELECT c.user_id AS user_id, {charge_month} AS month, c.amount AS amount
    FROM ledger_entries c
    WHERE c.kind = 'session_minute' AND c.unit = 'usd_micros' AND c.user_id IS NOT NULL
    UNION ALL
    SELECT c.user_id, {charge_month}, -r.amount
    FROM ledger_entries r
    JOIN ledger_entries c ON r.idempotency_key = c.idempotency_key || ':' || 'refund'
    WHERE r.kind = 'session_minute_refund' AND r.unit = 'usd_micros' AND c.user_id IS NOT NULL
) spend
GROUP BY user_id, month
"""


def upgrade() -> None:
    op.add_column("users", sa.Column("monthly_budget_micros", sa.BigInteger(), nullable=True))
    op.create_table(
        "monthly_spend",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False),
        sa.Column("stopped_at_micros", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "month"),
    )
    month = _MONTH[op.get_bind().dialect.name].format(column="c.created_at")
    op.execute(_BACKFILL.format(charge_month=month))


def downgrade() -> None:
    op.drop_table("monthly_spend")
    op.drop_column("users", "monthly_budget_micros")
