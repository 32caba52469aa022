"""An account's monthly budget: the most credit its GPU minutes may cost in one calendar month
(UTC). Pure rules and the words for them, no I/O.

Only credit counts: free minutes and Sizzle Lab minutes are not money. The budget is a hard cap
(services/metering.py refuses the minute that would go over it); this module says what a budget
is, when it is reached, which warnings a spend has crossed, and how to tell it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sizzle.domain.charges import dollars
from sizzle.domain.limits import MAX_SPEND_CAP_MICROS, MICROS_PER_CENT, LimitError, parse_usd_amount
from sizzle.domain.money import MICROS_PER_USD

WARNING_PERCENTS = (75, 90)
REACHED_PERCENT = 100
MAX_BUDGET_MICROS = MAX_SPEND_CAP_MICROS
FIELD = "monthly_budget"


def month_of(moment: datetime) -> str:
    """The calendar month (UTC) a moment falls in, as 'YYYY-MM'."""
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"


def month_start(month: str) -> datetime:
    year, number = (int(part) for part in month.split("-"))
    return datetime(year, number, 1, tzinfo=UTC)


def next_month_start(month: str) -> datetime:
    """When a month's spend starts again from zero: the first moment of the next month, UTC."""
    year, number = (int(part) for part in month.split("-"))
    return datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)


def month_name(month: str) -> str:
    """'December 2026'."""
    return f"{month_start(month):%B %Y}"


def parse_budget(text: str) -> int | None:
    """A budget as typed ("25", "2,50", "$2.50"): micro-dollars, or None when left empty."""
    if not text.strip():
        return None
    try:
        micros = parse_usd_amount(text)
    except LimitError as exc:
        raise LimitError(exc.message, field=FIELD) from None
    return check_budget(micros)


def check_budget(micros: int) -> int:
    """A budget that can be used, or a sentence saying what to enter instead."""
    if micros <= 0:
        raise LimitError(
            "A monthly budget is more than $0. Leave it empty for no budget.", field=FIELD
        )
    if micros % MICROS_PER_CENT:
        raise LimitError("A monthly budget is dollars and whole cents, like 25.50.", field=FIELD)
    if micros > MAX_BUDGET_MICROS:
        raise LimitError(
            f"The largest monthly budget is ${MAX_BUDGET_MICROS // MICROS_PER_USD:,}. "
            "Leave it empty for no budget.",
            field=FIELD,
        )
    return micros


def reached(budget_micros: int | None, spent_micros: int, stopped_at_micros: int | None) -> bool:
    """Whether no more credit may be spent this month: the budget is all spent, or metering
    refused a minute under a budget at least as large as the one now set (raising it above
    that lifts the stop)."""
    if budget_micros is None:
        return False
    if spent_micros >= budget_micros:
        return True
    return stopped_at_micros is not None and budget_micros <= stopped_at_micros


def warnings_crossed(budget_micros: int, spent_micros: int) -> list[int]:
    """The warning percents (75, 90) a month's spend has come to."""
    return [p for p in WARNING_PERCENTS if spent_micros * 100 >= budget_micros * p]


@dataclass(frozen=True)
class BudgetMonth:
    """One account's budget and what its GPU minutes cost in credit in one month."""

    budget_micros: int | None
    month: str
    spent_micros: int = 0
    stopped_at_micros: int | None = None  # the budget in force when metering refused a minute

    @property
    def reached(self) -> bool:
        return reached(self.budget_micros, self.spent_micros, self.stopped_at_micros)

    @property
    def left_micros(self) -> int | None:
        if self.budget_micros is None:
            return None
        return 0 if self.reached else max(self.budget_micros - self.spent_micros, 0)

    @property
    def resets_at(self) -> datetime:
        return next_month_start(self.month)

    def allows(self, price_micros: int) -> bool:
        """Whether one more minute of credit at this price stays within the budget."""
        left = self.left_micros
        return left is None or price_micros <= left

    @property
    def line(self) -> str:
        """The one plain line every page shows: '$4.20 of your $10.00 monthly budget spent in
        December 2026 (UTC) · $5.80 left'."""
        spent = f"{dollars(self.spent_micros)} of GPU time paid with credit in " + month_name(
            self.month
        )
        if self.budget_micros is None:
            return f"{spent} (UTC) · no monthly budget set"
        head = (
            f"{dollars(self.spent_micros)} of your {dollars(self.budget_micros)} monthly budget "
            f"spent in {month_name(self.month)} (UTC)"
        )
        if self.reached:
            return f"{head} · budget reached: new sessions wait until {self.resets_text}"
        return f"{head} · {dollars(self.left_micros or 0)} left"

    @property
    def resets_text(self) -> str:
        """'1 January 2027, 00:00 UTC'."""
        return f"{self.resets_at.day} {self.resets_at:%B %Y}, 00:00 UTC"

    def refusal(self, price_micros: int | None = None) -> str:
        """Why a session cannot start, and how to change that."""
        assert self.budget_micros is not None  # noqa: S101 - only a set budget refuses
        how = f"Raise it on your account page, or wait until it starts again on {self.resets_text}."
        if self.reached or price_micros is None:
            return (
                f"You have reached your monthly budget of {dollars(self.budget_micros)} for "
                f"{month_name(self.month)}, so no new session can start. {how}"
            )
        return (
            f"This GPU costs {dollars(price_micros)} a minute and only "
            f"{dollars(self.left_micros or 0)} of your {dollars(self.budget_micros)} monthly "
            f"budget is left for {month_name(self.month)}. {how}"
        )
