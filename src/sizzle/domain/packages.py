"""Credit packages: what a purchase costs and how much credit it brings, bonus included."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from sizzle.domain.money import usd_to_micros

MICROS_PER_CENT = 10_000

DEFAULT_PACKAGES = (
    '[{"id": "5", "price_usd": "5", "bonus_percent": 0},'
    ' {"id": "20", "price_usd": "20", "bonus_percent": 10},'
    ' {"id": "50", "price_usd": "50", "bonus_percent": 20},'
    ' {"id": "100", "price_usd": "100", "bonus_percent": 30}]'
)


class CreditPackage(BaseModel):
    """Pay `price_usd`, get it as credit plus `bonus_percent` more."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
    price_usd: Decimal = Field(gt=0, le=10_000)
    bonus_percent: int = Field(0, ge=0, le=100)

    @field_validator("price_usd")
    @classmethod
    def _whole_cents(cls, value: Decimal) -> Decimal:
        if usd_to_micros(value) % MICROS_PER_CENT:
            raise ValueError("a price is a whole number of cents")
        return value

    @property
    def price_micros(self) -> int:
        return usd_to_micros(self.price_usd)

    @property
    def price_cents(self) -> int:
        return self.price_micros // MICROS_PER_CENT

    @property
    def bonus_micros(self) -> int:
        """The bonus, rounded down to the micro-dollar (never more than promised)."""
        return self.price_micros * self.bonus_percent // 100

    @property
    def credit_micros(self) -> int:
        return self.price_micros + self.bonus_micros


_PACKAGES = TypeAdapter(list[CreditPackage])


def parse_packages(raw: str) -> list[CreditPackage]:
    """The packages of SIZZLE_CREDIT_PACKAGES; ValueError saying what is wrong."""
    packages = _PACKAGES.validate_json(raw)
    ids = [p.id for p in packages]
    if len(set(ids)) != len(ids):
        raise ValueError("SIZZLE_CREDIT_PACKAGES names a package twice")
    return packages
