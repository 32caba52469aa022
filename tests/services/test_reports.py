"""Operator reports against a real database: daily revenue, upstream cost and margin from the
charges the metering pass really writes, exact to the micro-dollar."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest

from sizzle.clock import to_ms
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, User
from sizzle.services import ledger, reports
from sizzle.services.metering import charge_due_minutes
from sizzle.services.payments.common import STRIPE_ACCOUNT
from tests.helpers import make_user

DAY1 = datetime(2026, 3, 1, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY2 + timedelta(days=1)


async def active_session(
    db: Database, user: User, *, started: datetime, price: int, upstream: int | None
) -> str:
    """An active session billing from `started`, at `price` a minute and `upstream` an hour."""
    session_id = uuid.uuid4().hex
    async with db.transaction() as tx:
        tx.add(
            GpuSession(
                id=session_id,
                user_id=user.id,
                tier="starter",
                status="active",
                provider="vast",
                price_micros_per_minute=price,
                upstream_micros_per_hour=upstream,
                charged_minutes=0,
                active_ms_before=0,
                active_since_ms=to_ms(started),
                created_at=started,
                started_at=started,
            )
        )
    return session_id


async def meter(db: Database, at: datetime) -> None:
    async with db.transaction() as tx:
        await charge_due_minutes(tx, now=at)


async def stop(db: Database, session_id: str) -> None:
    async with db.transaction() as tx:
        session = await tx.get(GpuSession, session_id)
        assert session is not None
        session.status = "terminated"
        session.active_since_ms = None


async def daily(db: Database, since: datetime, until: datetime) -> list[reports.DayRevenue]:
    async with db.read() as tx:
        return await reports.daily_revenue(tx, since=since, until=until)


async def test_one_day_free_minutes_first_then_credit_with_exact_cost(db: Database) -> None:
    user = await make_user(db, now=DAY1, free_minutes=2, credit_usd="10")
    start = DAY1 + timedelta(hours=9)
    session_id = await active_session(db, user, started=start, price=150_000, upstream=1_200_000)
    await meter(db, start + timedelta(minutes=4, seconds=30))  # 5 started minutes
    await stop(db, session_id)

    (day,) = await daily(db, DAY1, DAY2)

    assert day.day == date(2026, 3, 1)
    assert (day.free_minutes, day.paid_minutes) == (2, 3)
    assert day.revenue_micros == 3 * 150_000
    assert day.upstream_sixtieths == 5 * 1_200_000  # free minutes cost us too
    assert day.upstream_micros == 100_000
    assert day.margin_micros == 350_000


async def test_upstream_cost_is_not_rounded_per_minute(db: Database) -> None:
    user = await make_user(db, now=DAY1, free_minutes=0, credit_usd="10")
    start = DAY1 + timedelta(hours=1)
    await active_session(db, user, started=start, price=450_000, upstream=1_000_003)
    await meter(db, start + timedelta(minutes=2, seconds=1))  # 3 minutes

    (day,) = await daily(db, DAY1, DAY2)

    assert day.revenue_micros == 1_350_000
    assert day.upstream_micros == Fraction(3_000_009, 60)  # 50 000.15 micro-dollars
    assert day.margin_micros == Fraction(1_350_000 * 60 - 3_000_009, 60)
    assert reports.usd_cents(day.upstream_micros) == "0.05"
    assert reports.usd_cents(day.margin_micros) == "1.30"


async def test_minutes_fall_on_the_utc_day_they_were_charged(db: Database) -> None:
    user = await make_user(db, now=DAY1, free_minutes=0, credit_usd="10")
    start = DAY2 - timedelta(minutes=2)
    session_id = await active_session(db, user, started=start, price=100_000, upstream=600_000)
    await meter(db, DAY2 - timedelta(seconds=1))  # minutes 1-2 on day 1
    await meter(db, DAY2 + timedelta(minutes=2))  # minutes 3-4 on day 2
    await stop(db, session_id)

    days = await daily(db, DAY1, DAY3)

    assert [(d.day, d.paid_minutes, d.revenue_micros) for d in days] == [
        (date(2026, 3, 1), 2, 200_000),
        (date(2026, 3, 2), 2, 200_000),
    ]
    assert [d.upstream_micros for d in days] == [20_000, 20_000]
    assert await daily(db, DAY2, DAY3) == days[1:]  # the range leaves day 1 out


async def test_several_sessions_and_users_add_up_per_day(db: Database) -> None:
    alice = await make_user(db, now=DAY1, free_minutes=1, credit_usd="10")
    bob = await make_user(db, now=DAY1, free_minutes=0, credit_usd="10")
    start = DAY1 + timedelta(hours=3)
    await active_session(db, alice, started=start, price=150_000, upstream=900_000)
    await active_session(db, bob, started=start, price=1_500_000, upstream=None)
    await meter(db, start + timedelta(seconds=90))  # 2 minutes each

    (day,) = await daily(db, DAY1, DAY2)

    assert (day.free_minutes, day.paid_minutes) == (1, 3)
    assert day.revenue_micros == 150_000 + 2 * 1_500_000
    assert day.upstream_micros == 2 * 15_000  # an unknown upstream price counts as nothing
    assert reports.total([day]) == reports.Revenue(
        paid_minutes=3,
        free_minutes=1,
        revenue_micros=3_150_000,
        upstream_sixtieths=1_800_000,
        plan_micros=0,
    )


async def test_refunded_minutes_count_back_on_the_day_of_the_refund(db: Database) -> None:
    user = await make_user(db, now=DAY1, free_minutes=0, credit_usd="10")
    start = DAY1 + timedelta(hours=23)
    session_id = await active_session(db, user, started=start, price=100_000, upstream=1_200_000)
    await meter(db, start + timedelta(minutes=4, seconds=1))  # 5 minutes on day 1
    async with db.transaction() as tx:
        await ledger.refund_session_minutes(
            tx, session_id, after_minute=3, now=DAY2 + timedelta(hours=1), reason="lost"
        )

    day1, day2 = await daily(db, DAY1, DAY3)

    assert (day1.paid_minutes, day1.revenue_micros, day1.upstream_micros) == (5, 500_000, 100_000)
    assert (day2.paid_minutes, day2.revenue_micros, day2.upstream_micros) == (-2, -200_000, -40_000)
    assert reports.total([day1, day2]).margin_micros == 300_000 - 60_000


async def test_grants_and_sign_up_minutes_are_not_revenue(db: Database) -> None:
    await make_user(db, now=DAY1 + timedelta(hours=1), free_minutes=30, credit_usd="25")
    assert await daily(db, DAY1, DAY2) == []


async def test_plan_payments_count_on_the_day_they_were_paid(db: Database) -> None:
    """A Sizzle Lab month paid on day 1 (as `Lab.on_invoice_paid` posts it), minutes on day 2."""
    user = await make_user(db, now=DAY1, free_minutes=0, credit_usd="5")
    async with db.transaction() as tx:
        await ledger.post_entry(
            tx,
            key="lab:invoice:in_1",
            kind="lab_payment",
            debit=STRIPE_ACCOUNT,
            credit=ledger.SUBSCRIPTIONS,
            amount=19_000_000,
            unit=ledger.USD,
            now=DAY1 + timedelta(hours=2),
            user_id=user.id,
        )
    start = DAY2 + timedelta(hours=1)
    await active_session(db, user, started=start, price=150_000, upstream=600_000)
    await meter(db, start + timedelta(seconds=30))  # its first minute

    first, second = await daily(db, DAY1, DAY3)

    assert (first.day, first.plan_micros, first.paid_minutes) == (DAY1.date(), 19_000_000, 0)
    assert first.margin_micros == 19_000_000
    assert (second.day, second.plan_micros, second.revenue_micros) == (DAY2.date(), 0, 150_000)
    assert second.margin_micros == 150_000 - 10_000
    assert reports.total([first, second]).margin_micros == 19_000_000 + 140_000
    assert await daily(db, DAY2, DAY3) == [second]


@pytest.mark.parametrize(
    ("micros", "shown"),
    [
        (0, "0.00"),
        (150_000, "0.15"),
        (4_999, "0.00"),
        (5_000, "0.01"),
        (Fraction(299_999, 60), "0.00"),  # 4999.98 micro-dollars
        (Fraction(300_000, 60), "0.01"),  # exactly half a cent rounds up
        (-5_000, "-0.01"),
        (-4_999, "0.00"),
        (123_456_789, "123.46"),
    ],
)
def test_cents_round_half_away_from_zero(micros: int | Fraction, shown: str) -> None:
    assert reports.usd_cents(micros) == shown
