"""What paid each session's minutes: free minutes, Sizzle Lab minutes, credit

Three counters on the session, kept by metering and by refunds in the transaction of their
ledger entries, so reading a session tells what it charged to credit without reading the
ledger. Existing sessions get them from their ledger entries: each `session_minute` by the
user account it was paid from, less each `session_minute_refund` by the account it went back to.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = {
    "free_minutes_used": ("free_minutes", sa.Integer()),
    "plan_minutes_used": ("included_minutes", sa.Integer()),
    "credit_charged_micros": ("credit", sa.BigInteger()),
}

# The signed sum of one session's minute charges and refunds from the user's account of a kind.
_PAID_FROM = """
COALESCE((
    SELECT SUM(CASE WHEN e.kind = 'session_minute' THEN e.amount ELSE -e.amount END)
    FROM ledger_entries e
    JOIN ledger_accounts a
      ON a.id = CASE WHEN e.kind = 'session_minute' THEN e.debit_account_id
                     ELSE e.credit_account_id END
    WHERE e.session_id = gpu_sessions.id
      AND e.kind IN ('session_minute', 'session_minute_refund')
      AND a.kind = '{kind}'
), 0)
"""


# Made of the constants above, no input.
BACKFILL = (
    "UPDATE gpu_sessions SET "  # noqa: S608
    + ", ".join(
        f"{column} = {_PAID_FROM.format(kind=account)}" for column, (account, _) in COLUMNS.items()
    )
    + " WHERE charged_minutes > 0"
)


def upgrade() -> None:
    for column, (_, kind) in COLUMNS.items():
        op.add_column("gpu_sessions", sa.Column(column, kind, nullable=False, server_default="0"))
    op.execute(BACKFILL)


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of gpu_sessions would trip the foreign
    # keys that point at it.
    for column in reversed(COLUMNS):
        op.drop_column("gpu_sessions", column)
