"""Money arithmetic: exact micro-dollars and per-started-minute billing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sizzle.domain.money import (
    micros_to_cents_str,
    micros_to_usd,
    minutes_affordable,
    minutes_started,
    usd_to_micros,
)


@pytest.mark.parametrize(
    ("usd", "micros"),
    [
        ("0.15", 150_000),
        ("1.50", 1_500_000),
        ("4", 4_000_000),
        (7, 7_000_000),
        (Decimal("0.000001"), 1),
        ("0.0000010", 1),
        ("0", 0),
    ],
)
def test_usd_to_micros_is_exact(usd: str | int | Decimal, micros: int) -> None:
    assert usd_to_micros(usd) == micros


@pytest.mark.parametrize("usd", ["0.0000001", "0.1500001", Decimal("1.0000005")])
def test_usd_to_micros_refuses_sub_micro_precision(usd: str | Decimal) -> None:
    with pytest.raises(ValueError, match="precision"):
        usd_to_micros(usd)


@given(st.integers(min_value=0, max_value=10**15))
def test_micros_round_trip_through_dollars(micros: int) -> None:
    assert usd_to_micros(micros_to_usd(micros)) == micros


@pytest.mark.parametrize(
    ("micros", "shown"), [(0, "0.00"), (150_000, "0.15"), (4_999, "0.00"), (5_000, "0.01")]
)
def test_display_rounds_to_cents(micros: int, shown: str) -> None:
    assert micros_to_cents_str(micros) == shown


@pytest.mark.parametrize(
    ("active_ms", "minutes"),
    [(0, 0), (1, 1), (59_999, 1), (60_000, 1), (60_001, 2), (120_000, 2), (120_001, 3)],
)
def test_every_started_minute_counts(active_ms: int, minutes: int) -> None:
    assert minutes_started(active_ms) == minutes


def test_minutes_started_refuses_negative_time() -> None:
    with pytest.raises(ValueError):
        minutes_started(-1)


@pytest.mark.parametrize(
    ("free", "balance", "price", "minutes"),
    [
        (0, 0, 150_000, 0),
        (3, 0, 150_000, 3),
        (0, 149_999, 150_000, 0),
        (0, 150_000, 150_000, 1),
        (0, 449_999, 150_000, 2),
        (2, 450_000, 150_000, 5),
        (-1, -5, 150_000, 0),
    ],
)
def test_minutes_affordable_counts_free_minutes_then_whole_paid_minutes(
    free: int, balance: int, price: int, minutes: int
) -> None:
    assert minutes_affordable(free_minutes=free, balance_micros=balance, price_micros=price) == (
        minutes
    )


def test_minutes_affordable_refuses_a_free_price() -> None:
    with pytest.raises(ValueError):
        minutes_affordable(free_minutes=1, balance_micros=1, price_micros=0)


def test_a_providers_quoted_price_becomes_micros_exactly_or_half_up() -> None:
    from sizzle.domain.money import quoted_usd_to_micros

    assert quoted_usd_to_micros(0.29) == 290_000  # the float's decimal text, not 0.28999...
    assert quoted_usd_to_micros("0.3456789") == 345_679
    assert quoted_usd_to_micros(Decimal("2.69") * 3) == 8_070_000
