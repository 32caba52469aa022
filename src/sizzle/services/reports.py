"""Operator reports: revenue, upstream cost and margin per day; users with their balances.

Revenue is read from the ledger, not from the sessions: every charged minute is one
`session_minute` entry (micro-dollars when paid with credit, one unit of `minutes` when paid
with a free minute), and a minute given back is one `session_minute_refund` entry, counted
against the day of the refund. A minute costs us its session's `upstream_micros_per_hour / 60`
whichever way the user paid for it, so upstream cost is kept exact in sixtieths of a
micro-dollar and rounded only for display. Sizzle Lab plan payments (`lab_payment` entries,
card to `platform:subscriptions`) count on the day Stripe's invoice was paid: the minutes they
include show as free ones, with their upstream cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import GpuSession, LedgerAccount, LedgerEntry, SessionEvent, User
from sizzle.domain.idle import IDLE_ACTOR
from sizzle.domain.lifecycle import SessionStatus
from sizzle.domain.money import MICROS_PER_USD
from sizzle.services import ledger

MINUTE_CHARGE = "session_minute"
MINUTE_REFUND = "session_minute_refund"


@dataclass(frozen=True)
class Revenue:
    """What session minutes brought in and cost us; every amount an exact integer."""

    paid_minutes: int  # minutes paid with credit
    # minutes paid with free or Sizzle Lab minutes (no credit revenue, but an upstream cost)
    free_minutes: int
    revenue_micros: int  # credit charged for those minutes
    upstream_sixtieths: int  # upstream cost in 1/60 micro-dollar: sum of per-hour prices
    plan_micros: int  # Sizzle Lab plan payments

    @property
    def upstream_micros(self) -> Fraction:
        """The exact upstream cost in micro-dollars."""
        return Fraction(self.upstream_sixtieths, 60)

    @property
    def margin_micros(self) -> Fraction:
        """Revenue (minutes charged to credit, and plan payments) less upstream cost, exact."""
        return self.revenue_micros + self.plan_micros - self.upstream_micros


@dataclass(frozen=True)
class DayRevenue(Revenue):
    day: date


@dataclass(frozen=True)
class UserRow:
    user: User
    credit_micros: int
    free_minutes: int


def total(days: Iterable[Revenue]) -> Revenue:
    """The sum of several days, still exact."""
    rows = list(days)
    return Revenue(
        paid_minutes=sum(r.paid_minutes for r in rows),
        free_minutes=sum(r.free_minutes for r in rows),
        revenue_micros=sum(r.revenue_micros for r in rows),
        upstream_sixtieths=sum(r.upstream_sixtieths for r in rows),
        plan_micros=sum(r.plan_micros for r in rows),
    )


def usd_cents(micros: int | Fraction) -> str:
    """Dollars to the cent, half away from zero like the rest of the display: '-1.23'."""
    exact = Fraction(micros) / (MICROS_PER_USD // 100)  # in cents
    cents = (exact.numerator * 2 + exact.denominator) // (exact.denominator * 2)
    if exact < 0:
        cents = -((-exact.numerator * 2 + exact.denominator) // (exact.denominator * 2))
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def _utc_day(tx: AsyncSession, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a stored moment (SQLite keeps naive UTC text)."""
    if tx.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def _as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


async def daily_revenue(tx: AsyncSession, *, since: datetime, until: datetime) -> list[DayRevenue]:
    """Revenue, free minutes and upstream cost of session minutes, and plan payments, per UTC
    day in [since, until), oldest day first; days with neither are left out."""
    day = _utc_day(tx, LedgerEntry.created_at).label("day")
    sign = case((LedgerEntry.kind == MINUTE_CHARGE, 1), else_=-1)
    paid = LedgerEntry.unit == ledger.USD
    query = (
        select(
            day,
            func.sum(case((paid, sign), else_=0)),
            func.sum(case((paid, 0), else_=sign)),
            func.sum(case((paid, sign * LedgerEntry.amount), else_=0)),
            func.sum(sign * func.coalesce(GpuSession.upstream_micros_per_hour, 0)),
        )
        .join(GpuSession, GpuSession.id == LedgerEntry.session_id)
        .where(
            LedgerEntry.kind.in_((MINUTE_CHARGE, MINUTE_REFUND)),
            LedgerEntry.created_at >= since,
            LedgerEntry.created_at < until,
        )
        .group_by(day)
        .order_by(day)
    )
    minutes = {_as_date(row[0]): row for row in await tx.execute(query)}
    plans = await _daily_plan_payments(tx, since=since, until=until)
    return [
        DayRevenue(
            day=day,
            paid_minutes=int(minutes[day][1]) if day in minutes else 0,
            free_minutes=int(minutes[day][2]) if day in minutes else 0,
            revenue_micros=int(minutes[day][3]) if day in minutes else 0,
            upstream_sixtieths=int(minutes[day][4]) if day in minutes else 0,
            plan_micros=plans.get(day, 0),
        )
        for day in sorted(minutes.keys() | plans.keys())
    ]


async def _daily_plan_payments(
    tx: AsyncSession, *, since: datetime, until: datetime
) -> dict[date, int]:
    day = _utc_day(tx, LedgerEntry.created_at).label("day")
    rows = await tx.execute(
        select(day, func.sum(LedgerEntry.amount))
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.credit_account_id)
        .where(
            LedgerAccount.name == ledger.SUBSCRIPTIONS,
            LedgerEntry.created_at >= since,
            LedgerEntry.created_at < until,
        )
        .group_by(day)
    )
    return {_as_date(row[0]): int(row[1]) for row in rows}


async def live_session_counts(tx: AsyncSession) -> dict[str, int]:
    """How many sessions are in each not-yet-ended status, every such status listed."""
    unfinished = [s.value for s in SessionStatus if not s.is_terminal()]
    rows = await tx.execute(
        select(GpuSession.status, func.count())
        .where(GpuSession.status.in_(unfinished))
        .group_by(GpuSession.status)
    )
    found: dict[str, int] = {str(status): int(count) for status, count in rows}
    return {status: found.get(status, 0) for status in unfinished}


async def stops_by_reason(
    tx: AsyncSession, reasons: Sequence[str], *, since: datetime, until: datetime
) -> dict[str, int]:
    """How many sessions ended for each of these reasons (say, the monthly budget) between
    `since` and `until`, every reason listed."""
    rows = await tx.execute(
        select(GpuSession.end_reason, func.count())
        .where(
            GpuSession.end_reason.in_(reasons),
            GpuSession.ended_at >= since,
            GpuSession.ended_at < until,
        )
        .group_by(GpuSession.end_reason)
    )
    found: dict[str, int] = {str(reason): int(count) for reason, count in rows}
    return {reason: found.get(reason, 0) for reason in reasons}


async def idle_stops(tx: AsyncSession, *, since: datetime | None = None) -> dict[str, int]:
    """Sessions idle auto-stop paused and stopped (since `since`, else ever), by what it did."""
    query = (
        select(SessionEvent.to_status, func.count())
        .where(SessionEvent.actor == IDLE_ACTOR)
        .group_by(SessionEvent.to_status)
    )
    if since is not None:
        query = query.where(SessionEvent.created_at >= since)
    counts = {str(status): int(n) for status, n in await tx.execute(query)}
    return {
        "paused": counts.get(SessionStatus.PAUSED.value, 0),
        "stopped": counts.get(SessionStatus.STOPPING.value, 0),
    }


async def emails_of(tx: AsyncSession, user_ids: Sequence[str]) -> dict[str, str]:
    """The email of each of these users."""
    if not user_ids:
        return {}
    rows = await tx.execute(select(User.id, User.email).where(User.id.in_(set(user_ids))))
    return {str(user_id): str(email) for user_id, email in rows}


async def list_users(
    tx: AsyncSession, *, email_contains: str, limit: int, offset: int
) -> tuple[list[UserRow], int]:
    """Users (newest first) whose email contains the text, with their balances; and how many."""
    where = []
    if email_contains:
        where.append(User.email.contains(email_contains.strip().lower(), autoescape=True))
    count = await tx.scalar(select(func.count()).select_from(User).where(*where))
    users = list(
        await tx.scalars(
            select(User)
            .where(*where)
            .order_by(User.created_at.desc(), User.id)
            .limit(limit)
            .offset(offset)
        )
    )
    balances = await tx.execute(
        select(LedgerAccount.user_id, LedgerAccount.kind, LedgerAccount.balance).where(
            LedgerAccount.user_id.in_([u.id for u in users])
        )
    )
    by_user: dict[tuple[str, str], int] = {
        (str(user_id), str(kind)): int(balance) for user_id, kind, balance in balances
    }
    rows = [
        UserRow(
            user=u,
            credit_micros=by_user.get((u.id, "credit"), 0),
            free_minutes=by_user.get((u.id, "free_minutes"), 0),
        )
        for u in users
    ]
    return rows, count or 0
