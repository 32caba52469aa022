"""The monthly budget's pure rules: the calendar month (UTC), reading a budget as typed, when it
is reached, and the one line that tells it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sizzle.domain.budget import (
    BudgetMonth,
    month_of,
    next_month_start,
    parse_budget,
    reached,
    warnings_crossed,
)
from sizzle.domain.limits import LimitError


def test_the_month_is_the_calendar_month_in_utc() -> None:
    late_in_new_york = datetime(2026, 3, 31, 21, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert month_of(late_in_new_york) == "2026-04"  # 02:00 UTC on 1 April
    assert month_of(datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)) == "2026-03"


@pytest.mark.parametrize(
    ("month", "resets"),
    [("2026-03", datetime(2026, 4, 1, tzinfo=UTC)), ("2026-12", datetime(2027, 1, 1, tzinfo=UTC))],
)
def test_a_month_resets_on_the_first_of_the_next_at_midnight_utc(
    month: str, resets: datetime
) -> None:
    assert next_month_start(month) == resets


@pytest.mark.parametrize(
    ("typed", "micros"),
    [("25", 25_000_000), ("2,50", 2_500_000), ("$2.50", 2_500_000), ("", None), ("  ", None)],
)
def test_a_budget_is_read_as_typed_and_empty_is_none(typed: str, micros: int | None) -> None:
    assert parse_budget(typed) == micros


@pytest.mark.parametrize("typed", ["0", "$0.00", "abc", "1,000", "100001"])
def test_a_budget_that_cannot_be_used_names_its_field(typed: str) -> None:
    with pytest.raises(LimitError) as refused:
        parse_budget(typed)
    assert refused.value.field == "monthly_budget"


def test_reached_when_all_spent_or_refused_under_a_budget_not_raised_since() -> None:
    assert not reached(None, 10**9, None)
    assert reached(1_000_000, 1_000_000, None)
    assert not reached(1_000_000, 900_000, None)
    assert reached(1_000_000, 900_000, 1_000_000)  # the next minute did not fit
    assert not reached(1_200_000, 900_000, 1_000_000)  # raised since


def test_warnings_come_at_75_and_90_percent() -> None:
    assert warnings_crossed(1_000_000, 749_999) == []
    assert warnings_crossed(1_000_000, 750_000) == [75]
    assert warnings_crossed(1_000_000, 900_000) == [75, 90]


def test_the_line_tells_spend_budget_and_what_is_left() -> None:
    state = BudgetMonth(budget_micros=10_000_000, month="2026-12", spent_micros=4_200_000)
    assert state.line == (
        "$4.20 of your $10.00 monthly budget spent in December 2026 (UTC) · $5.80 left"
    )
    full = BudgetMonth(budget_micros=1_000_000, month="2026-12", spent_micros=1_000_000)
    assert full.line.endswith("budget reached: new sessions wait until 1 January 2027, 00:00 UTC")
    assert full.left_micros == 0
    assert "Raise it on your account page" in full.refusal()
