"""What paid a session's minutes, and the one way Sizzle tells it. No I/O.

A charged minute is paid by a free minute, a Sizzle Lab minute or credit (in that order, see
services/metering.py). Only credit is money: free and Lab minutes are never shown as dollars.
Every page, the API's `charges_text` and the CLI take their words from here, so they cannot
drift apart: "3 free minutes used · $0.00 charged" for a session its free minutes paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sizzle.domain.lab import LAB_NAME
from sizzle.domain.money import micros_to_cents_str, minutes_affordable

SEPARATOR = " · "
LOW_MINUTES = 5  # "that still buys" fewer minutes than this: the page warns


def count(number: int, word: str) -> str:
    """'1 minute', '3 minutes', '0 minutes'."""
    return f"{number} {word}{'' if number == 1 else 's'}"


def dollars(micros: int) -> str:
    """Display dollars, rounded to cents: '$0.45'."""
    return f"${micros_to_cents_str(micros)}"


class ChargeCounters(Protocol):
    """The counters metering keeps on a session (its row, or anything shaped like it)."""

    charged_minutes: int
    free_minutes_used: int
    plan_minutes_used: int
    credit_charged_micros: int


@dataclass(frozen=True)
class SessionCharges:
    """A session's charged minutes by what paid them (refunded minutes taken out)."""

    free_minutes: int = 0
    plan_minutes: int = 0  # Sizzle Lab's included minutes
    credit_minutes: int = 0
    credit_micros: int = 0

    def __post_init__(self) -> None:
        if min(self.free_minutes, self.plan_minutes, self.credit_minutes, self.credit_micros) < 0:
            raise ValueError("charges cannot be negative")

    @classmethod
    def of(
        cls, *, charged_minutes: int, free_minutes: int, plan_minutes: int, credit_micros: int
    ) -> SessionCharges:
        """From a session row's counters: the minutes neither free nor Lab were credit."""
        return cls(
            free_minutes=free_minutes,
            plan_minutes=plan_minutes,
            credit_minutes=charged_minutes - free_minutes - plan_minutes,
            credit_micros=credit_micros,
        )

    @classmethod
    def of_session(cls, session: ChargeCounters) -> SessionCharges:
        """From the counters metering keeps on a session."""
        return cls.of(
            charged_minutes=session.charged_minutes,
            free_minutes=session.free_minutes_used,
            plan_minutes=session.plan_minutes_used,
            credit_micros=session.credit_charged_micros,
        )

    @property
    def minutes(self) -> int:
        return self.free_minutes + self.plan_minutes + self.credit_minutes

    def __add__(self, other: SessionCharges) -> SessionCharges:
        return SessionCharges(
            free_minutes=self.free_minutes + other.free_minutes,
            plan_minutes=self.plan_minutes + other.plan_minutes,
            credit_minutes=self.credit_minutes + other.credit_minutes,
            credit_micros=self.credit_micros + other.credit_micros,
        )

    @property
    def charged(self) -> str:
        """The money: '$0.45'."""
        return dollars(self.credit_micros)

    @property
    def used_parts(self) -> list[str]:
        """The minutes that cost no money, in words: ['3 free minutes used']."""
        parts = []
        if self.free_minutes:
            parts.append(f"{count(self.free_minutes, 'free minute')} used")
        if self.plan_minutes:
            parts.append(f"{count(self.plan_minutes, f'{LAB_NAME} minute')} used")
        return parts

    @property
    def text(self) -> str:
        """The sentence: '2 free minutes used · $0.15 charged for 1 minute'."""
        money = f"{self.charged} charged"
        if self.credit_minutes:
            money += f" for {count(self.credit_minutes, 'minute')}"
        return SEPARATOR.join([*self.used_parts, money])

    @property
    def note(self) -> str:
        """What did not cost money, short, for a table cell: '3 free min · 2 Lab min' or ''."""
        parts = []
        if self.free_minutes:
            parts.append(f"{self.free_minutes} free min")
        if self.plan_minutes:
            parts.append(f"{self.plan_minutes} Lab min")
        return SEPARATOR.join(parts)


@dataclass(frozen=True)
class Funds:
    """A user's balances as one minute at a time draws on them."""

    free_minutes: int
    plan_minutes: int  # Sizzle Lab minutes left; only spent where `lab_covered`
    credit_micros: int

    def minutes_at(self, price_micros: int, *, lab_covered: bool) -> int:
        """Whole minutes these pay at a price: free, Lab (where it applies), then credit."""
        return minutes_affordable(
            free_minutes=self.free_minutes,
            balance_micros=self.credit_micros,
            price_micros=price_micros,
            included_minutes=self.plan_minutes if lab_covered else 0,
        )


@dataclass(frozen=True)
class MoneyNow:
    """One moment of a session's money as the live page shows it."""

    charges: SessionCharges
    funds: Funds
    price_micros: int
    lab_covered: bool

    @property
    def minutes_left(self) -> int:
        return self.funds.minutes_at(self.price_micros, lab_covered=self.lab_covered)

    @property
    def low(self) -> bool:
        return self.minutes_left < LOW_MINUTES

    def after_next_minute(self) -> MoneyNow | None:
        """The same once the next minute is charged (free first, then Lab, then credit), as
        metering will charge it as soon as it starts; None if nothing can pay for it."""
        funds, charges = self.funds, self.charges
        if funds.free_minutes > 0:
            paid = SessionCharges(free_minutes=1)
            left = Funds(funds.free_minutes - 1, funds.plan_minutes, funds.credit_micros)
        elif self.lab_covered and funds.plan_minutes > 0:
            paid = SessionCharges(plan_minutes=1)
            left = Funds(funds.free_minutes, funds.plan_minutes - 1, funds.credit_micros)
        elif funds.credit_micros >= self.price_micros:
            paid = SessionCharges(credit_minutes=1, credit_micros=self.price_micros)
            left = Funds(
                funds.free_minutes, funds.plan_minutes, funds.credit_micros - self.price_micros
            )
        else:
            return None
        return MoneyNow(charges + paid, left, self.price_micros, self.lab_covered)

    def shown(self) -> dict[str, object]:
        """What the live page puts in its figures, all in words made here."""
        return {
            "charged_minutes": self.charges.minutes,
            "charged": self.charges.charged,
            "paid_with": self.charges.note,
            "text": self.charges.text,
            "credit_left": dollars(self.funds.credit_micros),
            "free_left": count(self.funds.free_minutes, "free minute") + " left",
            "lab_left": (
                count(self.funds.plan_minutes, f"{LAB_NAME} minute") + " left"
                if self.lab_covered and (self.funds.plan_minutes or self.charges.plan_minutes)
                else ""
            ),
            "minutes_left": self.minutes_left,
            "low": self.low,
        }
