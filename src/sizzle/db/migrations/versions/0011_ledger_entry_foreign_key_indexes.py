"""Index the ledger entries' account and session foreign keys

Deleting a ledger account (or a session) makes the database check every entry that could
point at it; without an index on the referencing column that is a scan of all entries per
deleted row (104 s for 10k accounts). The same columns serve statements (entries of one
account) and refunds (a session's minute charges).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_ledger_entries_debit_account_id": "debit_account_id",
    "ix_ledger_entries_credit_account_id": "credit_account_id",
    "ix_ledger_entries_session_id": "session_id",
}


def upgrade() -> None:
    for name, column in INDEXES.items():
        op.create_index(name, "ledger_entries", [column])


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="ledger_entries")
