"""Sizzle Lab, the monthly plan: a price, the GPU minutes it includes each month, and the
tiers those minutes may be spent on. Config, no I/O.

Included minutes are spent after free minutes and before credit, only on the Lab's tiers;
what is left at the end of a paid month is gone (no roll-over).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sizzle.domain.money import usd_to_micros
from sizzle.domain.packages import MICROS_PER_CENT
from sizzle.domain.tiers import TIERS

LAB_NAME = "Sizzle Lab"


@dataclass(frozen=True)
class LabPlan:
    price_usd: Decimal
    included_minutes: int
    tiers: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.price_usd <= 0 or usd_to_micros(self.price_usd) % MICROS_PER_CENT:
            raise ValueError("the Lab price is a positive whole number of cents")
        if self.included_minutes <= 0:
            raise ValueError("the Lab includes at least one minute a month")
        unknown = [tier for tier in self.tiers if tier not in TIERS]
        if unknown or not self.tiers:
            raise ValueError(
                f"Lab tiers must be some of {', '.join(TIERS)}; got {', '.join(self.tiers)!r}"
            )

    @property
    def price_micros(self) -> int:
        return usd_to_micros(self.price_usd)

    @property
    def price_cents(self) -> int:
        return self.price_micros // MICROS_PER_CENT

    def covers(self, tier: str) -> bool:
        return tier in self.tiers


def parse_lab_tiers(raw: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
