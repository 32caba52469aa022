"""The monthly budget's bookkeeping: each user's spend per calendar month (UTC), the budget's
state, the warnings, and the refusal of a session that would go over it.

Why a counter (`monthly_spend`, one row per user and month) and not a sum over the ledger:
metering must check the budget in the very statement that decides which minutes it charges,
on every pass, for every running user. Summing a month of `session_minute` entries there would
read a growing slice of the ledger each pass; the counter is one primary-key row per user. It
stays exact because it moves only in the transactions that write the ledger entries it counts:
metering adds each pass's credit charges (services/metering.py, in its set-based statements),
and a refund of a minute paid in advance takes its amount back from the month of the charge it
reverses (services/ledger.py). So for every user and month,
`spent_micros == sum(credit session_minute entries of that month) - their refunds`, which the
money state machine checks against the ledger. Metering holds the billing lock while it reads
and moves the counter, so two passes (two workers) never spend the same budget twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import GpuSession, MonthlySpend, User
from sizzle.domain.budget import (
    REACHED_PERCENT,
    BudgetMonth,
    month_name,
    month_of,
    warnings_crossed,
)
from sizzle.domain.charges import dollars
from sizzle.domain.lifecycle import SessionStatus
from sizzle.errors import BudgetReached, NotFound
from sizzle.services import audit
from sizzle.services.notifications import Kind, notify

LINK = "/account#budget"


async def month_state(tx: AsyncSession, user_id: str, *, now: datetime) -> BudgetMonth:
    """The user's budget and this month's spend (the calendar month of `now`, UTC)."""
    month = month_of(now)
    budget = await tx.scalar(select(User.monthly_budget_micros).where(User.id == user_id))
    row = await tx.get(MonthlySpend, (user_id, month))
    return BudgetMonth(
        budget_micros=budget,
        month=month,
        spent_micros=row.spent_micros if row else 0,
        stopped_at_micros=row.stopped_at_micros if row else None,
    )


async def set_budget(
    tx: AsyncSession,
    user_id: str,
    budget_micros: int | None,
    *,
    now: datetime,
    actor: str | None = None,
) -> BudgetMonth:
    """Set (or, with None, remove) the user's monthly budget, in the audit log; its state
    afterwards."""
    found = await tx.execute(
        update(User).where(User.id == user_id).values(monthly_budget_micros=budget_micros)
    )
    if not found.rowcount:  # type: ignore[attr-defined]
        raise NotFound("user not found")
    audit.record(
        tx,
        "account.budget_set",
        actor=actor or f"user:{user_id}",
        now=now,
        user_id=user_id,
        detail="no budget" if budget_micros is None else dollars(budget_micros),
    )
    return await month_state(tx, user_id, now=now)


async def require_room(
    tx: AsyncSession, user_id: str, *, price_micros: int, needs_credit: bool, now: datetime
) -> None:
    """Refuse a session's start while the budget is reached, or when its first minute must be
    paid with credit that would go over the budget."""
    state = await month_state(tx, user_id, now=now)
    if state.reached:
        raise BudgetReached(state.refusal(), details=_details(state))
    if needs_credit and not state.allows(price_micros):
        raise BudgetReached(state.refusal(price_micros), details=_details(state))


async def over_budget_sessions(tx: AsyncSession, *, now: datetime) -> list[str]:
    """Running sessions whose user's budget for the month of `now` is reached (all spent, or a
    minute was refused under a budget not raised since): the metering job ends them."""
    rows = await tx.scalars(
        select(GpuSession.id)
        .join(User, User.id == GpuSession.user_id)
        .join(
            MonthlySpend,
            and_(MonthlySpend.user_id == GpuSession.user_id, MonthlySpend.month == month_of(now)),
        )
        .where(
            GpuSession.status == SessionStatus.ACTIVE.value,
            User.monthly_budget_micros.is_not(None),
            or_(
                MonthlySpend.spent_micros >= User.monthly_budget_micros,
                MonthlySpend.stopped_at_micros >= User.monthly_budget_micros,
            ),
        )
    )
    return list(rows)


def _details(state: BudgetMonth) -> dict[str, object]:
    return {"month": state.month, "resets_at": state.resets_at.isoformat()}


async def give_back(tx: AsyncSession, user_id: str, by_month: Mapping[str, int]) -> None:
    """Refunded credit goes back to the budget of the month its charge was made in."""
    for month, micros in by_month.items():
        if micros:
            await tx.execute(
                update(MonthlySpend)
                .where(MonthlySpend.user_id == user_id, MonthlySpend.month == month)
                .values(spent_micros=MonthlySpend.spent_micros - micros)
            )


# Adds one metering pass's credit charges (the pass's scratch table, meter_charges) to the
# month's counters, then marks the users a minute was refused for, with the budget in force.
_ADD_SPEND = """
INSERT INTO monthly_spend (user_id, month, spent_micros)
SELECT user_id, :month, SUM(price) FROM meter_charges
WHERE pay_with = 'credit'
GROUP BY user_id
ON CONFLICT (user_id, month) DO UPDATE
SET spent_micros = monthly_spend.spent_micros + excluded.spent_micros
"""

_MARK_STOPPED = """
INSERT INTO monthly_spend (user_id, month, spent_micros, stopped_at_micros)
SELECT mc.user_id, :month, 0, MAX(u.monthly_budget_micros)
FROM meter_charges mc JOIN users u ON u.id = mc.user_id
WHERE mc.refused = 'budget' AND u.monthly_budget_micros IS NOT NULL
GROUP BY mc.user_id
ON CONFLICT (user_id, month) DO UPDATE SET stopped_at_micros = excluded.stopped_at_micros
"""

# The users of this pass with a budget: their spend before and after it, and whether a minute
# of theirs was refused for the budget. Only these can have crossed a warning.
_BUDGETED = """
SELECT p.user_id, p.charged, p.refused, u.monthly_budget_micros, b.spent_micros
FROM (
    SELECT user_id,
           SUM(CASE WHEN pay_with = 'credit' THEN price ELSE 0 END) AS charged,
           MAX(CASE WHEN refused = 'budget' THEN 1 ELSE 0 END) AS refused
    FROM meter_charges GROUP BY user_id
) p
JOIN users u ON u.id = p.user_id
JOIN monthly_spend b ON b.user_id = p.user_id AND b.month = :month
WHERE u.monthly_budget_micros IS NOT NULL AND (p.charged > 0 OR p.refused = 1)
"""


async def count_pass(tx: AsyncSession, *, now: datetime) -> None:
    """Move the month's counters by a metering pass's charges (in its transaction), and tell
    each user whose spend crossed 75 % or 90 % of the budget, or reached it."""
    month = month_of(now)
    await tx.execute(text(_ADD_SPEND), {"month": month})
    await tx.execute(text(_MARK_STOPPED), {"month": month})
    rows = (await tx.execute(text(_BUDGETED), {"month": month})).all()
    for user_id, charged, refused, budget, spent in rows:
        state = BudgetMonth(budget_micros=int(budget), month=month, spent_micros=int(spent))
        before = warnings_crossed(int(budget), int(spent) - int(charged))
        for percent in warnings_crossed(int(budget), int(spent)):
            if percent not in before:  # crossed by this pass's charges
                await _warn(tx, user_id, state, percent, now=now)
        if refused:
            await _tell_reached(tx, user_id, state, now=now)


async def _warn(
    tx: AsyncSession, user_id: str, state: BudgetMonth, percent: int, *, now: datetime
) -> None:
    await _tell(
        tx,
        user_id,
        state,
        Kind.BUDGET_WARNING,
        percent,
        title=f"You have used {percent}% of your monthly budget",
        then=(
            "When it is all spent, Sizzle stops your running sessions and starts no new ones "
            f"until {state.resets_text}. You can raise the budget on your account page."
        ),
        now=now,
    )


async def _tell_reached(
    tx: AsyncSession, user_id: str, state: BudgetMonth, *, now: datetime
) -> None:
    await _tell(
        tx,
        user_id,
        state,
        Kind.BUDGET_REACHED,
        REACHED_PERCENT,
        title="Your monthly budget is reached",
        then=(
            "So Sizzle stopped your running sessions at the end of the time already paid for. "
            f"No new session starts until {state.resets_text}, or until you raise the budget "
            "on your account page."
        ),
        now=now,
    )


async def _tell(
    tx: AsyncSession,
    user_id: str,
    state: BudgetMonth,
    kind: Kind,
    percent: int,
    *,
    title: str,
    then: str,
    now: datetime,
) -> None:
    """One budget notification, once per user, month and percent."""
    assert state.budget_micros is not None  # noqa: S101 - only budgeted users are told
    await notify(
        tx,
        user_id=user_id,
        kind=kind,
        key=f"budget:{user_id}:{state.month}:{percent}",
        title=title,
        body=(
            f"Your GPU time has cost {dollars(state.spent_micros)} of your "
            f"{dollars(state.budget_micros)} budget for {month_name(state.month)}. {then}"
        ),
        now=now,
        link=LINK,
    )
