"""Limits as people type them: amounts in their own number style, refusals that say what to
write, and the minutes a cap pays for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizzle.domain.limits import (
    MAX_MINUTES_LIMIT,
    LimitError,
    check_limits,
    parse_minutes,
    parse_usd_amount,
)
from sizzle.domain.money import usd_to_micros

CENT = 10_000


@given(cents=st.integers(min_value=0, max_value=10_000_000))
def test_an_amount_written_any_usual_way_reads_as_the_same_micros(cents: int) -> None:
    dollars, part = divmod(cents, 100)
    grouped = f"{dollars:,}"
    for text in (
        f"{dollars}.{part:02d}",
        f"{dollars},{part:02d}",
        f"${dollars}.{part:02d}",
        f"{dollars}.{part:02d} USD",
        f"{grouped}.{part:02d}",
        f"{grouped.replace(',', '.')},{part:02d}",
    ):
        assert parse_usd_amount(text) == cents * CENT, text


@pytest.mark.parametrize(
    ("text", "usd"), [("2", "2"), ("2.5", "2.50"), (".5", "0.50"), ("1,000,000", "1000000")]
)
def test_short_forms_read_as_people_mean_them(text: str, usd: str) -> None:
    assert parse_usd_amount(text) == usd_to_micros(usd)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("five dollars", "is not an amount of money"),
        ("2.5.0", "is not an amount of money"),
        ("0.125", "is not an amount of money"),  # a fraction of a cent
        ("-1", "is not an amount of money"),
        ("", "is not an amount of money"),
        ("1,000", "could mean 1000 dollars or 1.00 dollars. Write 1000 or 1.00."),
        ("2.500", "could mean 2500 dollars or 2.50 dollars"),
    ],
)
def test_what_cannot_be_read_for_sure_is_refused_with_what_to_write(text: str, words: str) -> None:
    with pytest.raises(LimitError) as refused:
        parse_usd_amount(text)
    assert words in refused.value.message
    assert refused.value.field == "spend_cap"


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "x", str(MAX_MINUTES_LIMIT + 1)])
def test_a_time_limit_is_whole_minutes_in_range(text: str) -> None:
    with pytest.raises(LimitError, match="whole number of minutes"):
        parse_minutes(text)
    assert parse_minutes(" 30 ") == 30


def test_a_cap_under_one_minute_is_refused_with_the_smallest_cap() -> None:
    with pytest.raises(LimitError, match=r"smallest spending cap here is \$0\.45"):
        check_limits(
            max_minutes=None,
            spend_cap_micros=usd_to_micros("0.44"),
            price_micros_per_minute=usd_to_micros("0.45"),
        )


@given(
    cap_cents=st.integers(min_value=15, max_value=10_000_000),
    minutes=st.none() | st.integers(min_value=1, max_value=MAX_MINUTES_LIMIT),
)
def test_the_limit_never_lets_more_be_charged_than_the_cap(
    cap_cents: int, minutes: int | None
) -> None:
    price = usd_to_micros("0.15")
    limits = check_limits(
        max_minutes=minutes, spend_cap_micros=cap_cents * CENT, price_micros_per_minute=price
    )
    assert limits.minutes is not None and limits.minutes >= 1
    assert limits.minutes * price <= cap_cents * CENT < (limits.cap_minutes + 1) * price  # type: ignore[operator]
    if minutes is not None:
        assert limits.minutes <= minutes
