"""Money arithmetic: integer micro-dollars, per-minute billing. No I/O, no float arithmetic."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MICROS_PER_USD = 1_000_000
MS_PER_MINUTE = 60_000


def usd_to_micros(usd: str | int | Decimal) -> int:
    """Exact conversion of a dollar amount given as text or Decimal, refusing sub-micro digits."""
    value = Decimal(str(usd)) * MICROS_PER_USD
    if value != value.to_integral_value():
        raise ValueError(f"{usd} has more precision than a micro-dollar")
    return int(value)


def quoted_usd_to_micros(usd: float | str | Decimal) -> int:
    """A provider's quoted price (which may carry more digits) as micro-dollars, half up.

    A float goes through its shortest decimal text, so 0.29 stays 290000, not 289999.
    """
    value = Decimal(str(usd)) * MICROS_PER_USD
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def micros_to_usd(micros: int) -> Decimal:
    """Micro-dollars as an exact Decimal of dollars."""
    return Decimal(micros) / MICROS_PER_USD


def usd_text(micros: int) -> str:
    """Exact dollars as text, at least two decimals: 150000 -> '0.15', 123456 -> '0.123456'."""
    value = micros_to_usd(micros)
    cents = value.quantize(Decimal("0.01"))
    return str(cents if value == cents else value.normalize())


def micros_to_cents_str(micros: int) -> str:
    """Display form: dollars rounded to cents, e.g. '0.30'."""
    return str(micros_to_usd(micros).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def minutes_started(active_ms: int) -> int:
    """Each started minute is billed: ceil(active_ms / 60 000)."""
    if active_ms < 0:
        raise ValueError("active time cannot be negative")
    return -(-active_ms // MS_PER_MINUTE)


def minutes_affordable(
    *, free_minutes: int, balance_micros: int, price_micros: int, included_minutes: int = 0
) -> int:
    """How many whole minutes free minutes, included (Lab) minutes and credit can pay."""
    if price_micros <= 0:
        raise ValueError("a minute must cost something")
    return max(free_minutes, 0) + max(included_minutes, 0) + max(balance_micros, 0) // price_micros
