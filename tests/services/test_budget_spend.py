"""The month's spend that the budget caps is the ledger's credit charges of that month, less
their refunds: kept by metering and by refunds in their own transactions, each refund given back
to the month its charge was made in. Runs on SQLite, and on PostgreSQL with
SIZZLE_TEST_DATABASE_URL."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import LedgerEntry, MonthlySpend
from sizzle.domain.budget import month_of
from sizzle.services import ledger
from sizzle.state import AppState
from tests.helpers import launch_active_session, run_for, signed_in_user


async def spend_by_month(
    db: Database,
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """(the counters, what the ledger says): credit minute charges by user and the month they
    were charged in, less each refund of one in its charge's month."""
    async with db.read() as tx:
        counters = {
            (row.user_id, row.month): row.spent_micros
            for row in await tx.scalars(select(MonthlySpend))
        }
        entries = list(
            await tx.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.kind.in_(("session_minute", "session_minute_refund")),
                    LedgerEntry.unit == ledger.USD,
                )
            )
        )
    charges = {e.idempotency_key: e for e in entries if e.kind == "session_minute"}
    derived: dict[tuple[str, str], int] = defaultdict(int)
    for entry in entries:
        charge = charges[entry.idempotency_key.removesuffix(":refund")]
        sign = 1 if entry.kind == "session_minute" else -1
        assert charge.user_id is not None
        derived[charge.user_id, month_of(charge.created_at)] += sign * entry.amount
    return counters, dict(derived)


def _nonzero(spend: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    return {key: value for key, value in spend.items() if value}


async def test_a_refund_gives_back_to_the_month_its_charge_was_made_in(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    clock.advance((datetime(2026, 3, 31, 23, 58, tzinfo=UTC) - clock.now()).total_seconds())
    auth = await signed_in_user(client, db, clock=clock, free_minutes=0, credit_usd="10")
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=150)  # minutes 1-2 charged in March, 3 in April

    counters, derived = await spend_by_month(db)
    ((user_id, _), *_) = counters
    assert (
        _nonzero(counters)
        == derived
        == {
            (user_id, "2026-03"): 300_000,
            (user_id, "2026-04"): 150_000,
        }
    )

    async with db.transaction() as tx:
        await ledger.refund_session_minutes(
            tx, session_id, after_minute=1, now=clock.now(), reason="test"
        )
    counters, derived = await spend_by_month(db)
    assert _nonzero(counters) == _nonzero(derived) == {(user_id, "2026-03"): 150_000}


async def test_a_refund_of_free_minutes_gives_no_money_back(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=2, credit_usd="10")
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=170)  # 2 free minutes, then 1 of credit

    async with db.transaction() as tx:
        refunded = await ledger.refund_session_minutes(
            tx, session_id, after_minute=1, now=clock.now(), reason="test"
        )
    assert (refunded.free_minutes, refunded.credit_micros) == (1, 150_000)
    counters, derived = await spend_by_month(db)
    assert _nonzero(counters) == _nonzero(derived) == {}
