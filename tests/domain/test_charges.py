"""The one way Sizzle tells what paid a session: free and Lab minutes never as dollars."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizzle.domain.charges import Funds, MoneyNow, SessionCharges

STARTER = 150_000


@pytest.mark.parametrize(
    ("charges", "text", "note"),
    [
        (SessionCharges(free_minutes=3), "3 free minutes used · $0.00 charged", "3 free min"),
        (
            SessionCharges(free_minutes=1, credit_minutes=2, credit_micros=300_000),
            "1 free minute used · $0.30 charged for 2 minutes",
            "1 free min",
        ),
        (
            SessionCharges(plan_minutes=2, credit_minutes=1, credit_micros=150_000),
            "2 Sizzle Lab minutes used · $0.15 charged for 1 minute",
            "2 Lab min",
        ),
        (
            SessionCharges(credit_minutes=3, credit_micros=450_000),
            "$0.45 charged for 3 minutes",
            "",
        ),
        (SessionCharges(), "$0.00 charged", ""),
    ],
)
def test_the_words_for_each_mix(charges: SessionCharges, text: str, note: str) -> None:
    assert (charges.text, charges.note) == (text, note)


def test_a_session_row_gives_the_credit_minutes_as_the_rest() -> None:
    charges = SessionCharges.of(
        charged_minutes=5, free_minutes=2, plan_minutes=1, credit_micros=300_000
    )
    assert (charges.credit_minutes, charges.minutes, charges.charged) == (2, 5, "$0.30")


def test_counters_that_do_not_add_up_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        SessionCharges.of(charged_minutes=1, free_minutes=2, plan_minutes=0, credit_micros=0)


def test_the_next_minute_is_paid_free_then_lab_then_credit() -> None:
    money = MoneyNow(SessionCharges(), Funds(1, 1, 200_000), STARTER, lab_covered=True)
    paid = []
    while (money := money.after_next_minute()) is not None:
        paid.append(money.charges)
    assert paid[-1] == SessionCharges(1, 1, 1, 150_000)
    assert len(paid) == 3  # $0.05 left does not buy a fourth


def test_lab_minutes_do_not_pay_a_tier_they_do_not_cover() -> None:
    money = MoneyNow(SessionCharges(), Funds(0, 5, 0), STARTER, lab_covered=False)
    assert money.after_next_minute() is None and money.low


@given(
    free=st.integers(0, 20),
    lab=st.integers(0, 20),
    credit=st.integers(0, 5_000_000),
    covered=st.booleans(),
)
def test_minutes_left_is_how_many_next_minutes_can_be_paid(
    free: int, lab: int, credit: int, covered: bool
) -> None:
    money = MoneyNow(SessionCharges(), Funds(free, lab, credit), STARTER, lab_covered=covered)
    left, paid = money.minutes_left, 0
    while (money := money.after_next_minute()) is not None:
        paid += 1
        assert money.minutes_left == left - paid
    assert paid == left
