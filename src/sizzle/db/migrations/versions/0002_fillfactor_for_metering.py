"""Leave room on PostgreSQL pages so metering's updates stay on their page (HOT updates)

Every metering pass rewrites `gpu_sessions.charged_minutes` and `ledger_accounts.balance`
for each charged session. With full pages each new row version lands on another page and
every index of the table is written again; with free space on the page, PostgreSQL keeps
the new version beside the old one and leaves the indexes alone (neither column is indexed).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("gpu_sessions", "ledger_accounts")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
