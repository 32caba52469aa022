"""A session's limits as a person enters them: a time limit in minutes and a spending cap in
dollars, in their own number style ("2.50", "2,50", "$2.50"). Pure rules, no I/O.

Every refusal is a sentence that says what to enter instead; the page and the API both use
these, so they refuse the same things with the same words."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sizzle.domain.money import MICROS_PER_USD, micros_to_cents_str

MAX_MINUTES_LIMIT = 60 * 24 * 30  # thirty days
MAX_SPEND_CAP_MICROS = 100_000 * MICROS_PER_USD
MICROS_PER_CENT = MICROS_PER_USD // 100

_GROUPED = re.compile(r"[1-9]\d{0,2}(?:([.,])\d{3})(?:\1\d{3})+")  # 1,000,000 or 1.000.000
_ONE_GROUP = re.compile(r"[1-9]\d{0,2}[.,]\d{3}")  # 1,000 or 2.500: a thousand, or a fraction?
_PLAIN = re.compile(r"(\d+)(?:[.,](\d{1,2}))?|[.,](\d{1,2})")  # 2 / 2.5 / 2,50 / .50
_MIXED = re.compile(r"([1-9]\d{0,2}(?:([.,])\d{3})*)([.,])(\d{1,2})")  # 1,234.50 / 1.234,50
_CURRENCY = re.compile(r"^(?:us\s*\$|\$|usd)|(?:\$|usd|dollars?)$", re.IGNORECASE)


class LimitError(ValueError):
    """A limit that cannot be used, with the sentence that says why and what to enter."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def parse_usd_amount(text: str) -> int:
    """Dollars and cents as people write them, as micro-dollars: "2.50", "2,50", "$2.50",
    "1,000", "1.000,50". A lone separator before three digits groups thousands; before one or
    two digits it is the decimal point. A single separator before three digits ("1,000",
    "2.500") reads as a thousand in one country and as a fraction in another: a cap read ten
    hundred times too high is the mistake that costs money, so it is refused, with the two
    ways to write it. Refuses anything else, and fractions of a cent."""
    raw = text.strip().replace("\u00a0", " ")
    for _ in range(2):  # "$2.50", "2.50 USD", "US$ 2.50"
        raw = _CURRENCY.sub("", raw).strip()
    raw = raw.replace(" ", "")
    dollars: str
    cents = "0"
    if _GROUPED.fullmatch(raw):
        dollars = re.sub(r"[.,]", "", raw)
    elif found := _PLAIN.fullmatch(raw):
        dollars = found.group(1) or "0"
        cents = found.group(2) or found.group(3) or "0"
    elif (found := _MIXED.fullmatch(raw)) and found.group(2) != found.group(3):
        dollars = re.sub(r"[.,]", "", found.group(1))
        cents = found.group(4)
    elif _ONE_GROUP.fullmatch(raw):
        whole, part = re.split(r"[.,]", raw)
        raise LimitError(
            f"{_quoted(text)} could mean {whole}{part} dollars or {whole}.{part[:2]} dollars. "
            f"Write {whole}{part} or {whole}.{part[:2]}.",
            field="spend_cap",
        )
    else:
        raise LimitError(
            f"{_quoted(text)} is not an amount of money. Write dollars and cents, "
            "like 5, 2.50 or 2,50.",
            field="spend_cap",
        )
    return int(dollars) * MICROS_PER_USD + int(cents.ljust(2, "0")) * MICROS_PER_CENT


def _quoted(text: str) -> str:
    shown = text.strip()
    return f'"{shown[:24]}…"' if len(shown) > 24 else f'"{shown}"'


def parse_minutes(text: str) -> int:
    """A time limit: a whole number of minutes from 1 to thirty days."""
    raw = text.strip()
    if not raw.isdecimal() or not 1 <= int(raw) <= MAX_MINUTES_LIMIT:
        raise LimitError(minutes_refusal(), field="max_minutes")
    return int(raw)


def minutes_refusal() -> str:
    return (
        f"A time limit is a whole number of minutes, from 1 to {MAX_MINUTES_LIMIT:,} (thirty days)."
    )


@dataclass(frozen=True)
class SessionLimits:
    """What a session may last: the time limit, the cap, and the minutes they allow together."""

    max_minutes: int | None
    spend_cap_micros: int | None
    price_micros_per_minute: int

    @property
    def cap_minutes(self) -> int | None:
        """Whole minutes the cap pays for (each started minute is charged in advance)."""
        if self.spend_cap_micros is None:
            return None
        return self.spend_cap_micros // self.price_micros_per_minute

    @property
    def minutes(self) -> int | None:
        """The tighter of the two limits; None when there is neither."""
        found = [m for m in (self.max_minutes, self.cap_minutes) if m is not None]
        return min(found) if found else None

    @property
    def most_charged_micros(self) -> int | None:
        return None if self.minutes is None else self.minutes * self.price_micros_per_minute


def check_limits(
    *, max_minutes: int | None, spend_cap_micros: int | None, price_micros_per_minute: int
) -> SessionLimits:
    """The limits, refused with a sentence if one cannot be used at this price."""
    if max_minutes is not None and not 1 <= max_minutes <= MAX_MINUTES_LIMIT:
        raise LimitError(minutes_refusal(), field="max_minutes")
    if spend_cap_micros is not None:
        price = micros_to_cents_str(price_micros_per_minute)
        if spend_cap_micros % MICROS_PER_CENT:
            raise LimitError(
                "A spending cap is dollars and whole cents, like 2.50.", field="spend_cap"
            )
        if spend_cap_micros > MAX_SPEND_CAP_MICROS:
            raise LimitError(
                f"The largest spending cap is ${MAX_SPEND_CAP_MICROS // MICROS_PER_USD:,}. "
                "Leave it empty for no cap.",
                field="spend_cap",
            )
        if spend_cap_micros < price_micros_per_minute:
            raise LimitError(
                f"The smallest spending cap here is ${price}, the price of one minute: "
                "each started minute is paid in advance.",
                field="spend_cap",
            )
    return SessionLimits(max_minutes, spend_cap_micros, price_micros_per_minute)
