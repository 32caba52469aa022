"""The double-entry ledger: accounts, immutable entries, cached balances kept in step."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import LedgerAccount, LedgerEntry
from sizzle.domain.budget import month_of
from sizzle.domain.charges import SessionCharges
from sizzle.domain.money import minutes_affordable
from sizzle.services import budget

USD = "usd_micros"
MINUTES = "minutes"

GRANTS = "platform:grants"
REVENUE = "platform:revenue"
FREE_MINUTES_ISSUED = "platform:free_minutes_issued"
FREE_MINUTES_SPENT = "platform:free_minutes_spent"
INCLUDED_MINUTES_ISSUED = "platform:included_minutes_issued"
INCLUDED_MINUTES_SPENT = "platform:included_minutes_spent"
INCLUDED_MINUTES_EXPIRED = "platform:included_minutes_expired"
SUBSCRIPTIONS = "platform:subscriptions"


def credit_account_name(user_id: str) -> str:
    return f"user:{user_id}:credit"


def free_minutes_account_name(user_id: str) -> str:
    return f"user:{user_id}:free_minutes"


def included_minutes_account_name(user_id: str) -> str:
    """Sizzle Lab's minutes of the current month."""
    return f"user:{user_id}:included_minutes"


@dataclass(frozen=True)
class Balances:
    free_minutes: int
    credit_micros: int
    included_minutes: int = 0

    def minutes_at(self, price_micros: int, *, lab_covered: bool) -> int:
        """Whole minutes these balances pay at a price; Lab minutes only where they apply."""
        return minutes_affordable(
            free_minutes=self.free_minutes,
            balance_micros=self.credit_micros,
            price_micros=price_micros,
            included_minutes=self.included_minutes if lab_covered else 0,
        )


async def open_user_accounts(tx: AsyncSession, user_id: str) -> None:
    """Create the user's credit, free-minute and included-minute accounts, all at zero."""
    tx.add_all(
        [
            LedgerAccount(
                name=credit_account_name(user_id),
                user_id=user_id,
                kind="credit",
                unit=USD,
                balance=0,
            ),
            LedgerAccount(
                name=free_minutes_account_name(user_id),
                user_id=user_id,
                kind="free_minutes",
                unit=MINUTES,
                balance=0,
            ),
            LedgerAccount(
                name=included_minutes_account_name(user_id),
                user_id=user_id,
                kind="included_minutes",
                unit=MINUTES,
                balance=0,
            ),
        ]
    )
    await tx.flush()


async def account_id(tx: AsyncSession, name: str) -> int:
    found = await tx.scalar(select(LedgerAccount.id).where(LedgerAccount.name == name))
    if found is None:
        raise LookupError(f"no ledger account {name}")
    return found


async def post_entry(
    tx: AsyncSession,
    *,
    key: str,
    kind: str,
    debit: str,
    credit: str,
    amount: int,
    unit: str,
    now: datetime,
    user_id: str | None = None,
    session_id: str | None = None,
    minute: int | None = None,
    memo: str | None = None,
) -> bool:
    """Move `amount` from `debit` to `credit` once per `key`; False if the key was used before."""
    if amount <= 0:
        raise ValueError("ledger amounts are positive")
    if await tx.scalar(select(LedgerEntry.id).where(LedgerEntry.idempotency_key == key)):
        return False
    debit_id, credit_id = await account_id(tx, debit), await account_id(tx, credit)
    tx.add(
        LedgerEntry(
            idempotency_key=key,
            kind=kind,
            debit_account_id=debit_id,
            credit_account_id=credit_id,
            amount=amount,
            unit=unit,
            user_id=user_id,
            session_id=session_id,
            minute=minute,
            memo=memo,
            created_at=now,
        )
    )
    await _move(tx, debit_id=debit_id, credit_id=credit_id, amount=amount)
    await tx.flush()
    return True


async def entry_exists(tx: AsyncSession, key: str) -> bool:
    return bool(await tx.scalar(select(LedgerEntry.id).where(LedgerEntry.idempotency_key == key)))


async def refund_session_minutes(
    tx: AsyncSession, session_id: str, *, after_minute: int, now: datetime, reason: str
) -> SessionCharges:
    """Reverse the charges of minutes after `after_minute`: each goes back where it came from.

    The charges stay in the ledger; each gets one reversing entry keyed to it, so a retry
    refunds nothing twice. Credit given back goes back to the monthly budget's spend of the
    month the minute was charged in. Returns what was refunded, by what had paid it.
    """
    charged = await tx.scalars(
        select(LedgerEntry)
        .where(
            LedgerEntry.session_id == session_id,
            LedgerEntry.kind == "session_minute",
            LedgerEntry.minute > after_minute,
        )
        .order_by(LedgerEntry.minute)
    )
    refunded = SessionCharges()
    kinds: dict[int, str] = {}
    given_back: dict[str, int] = defaultdict(int)  # credit, by the month of its charge
    payer: str | None = None
    for charge in list(charged):
        key = f"{charge.idempotency_key}:refund"
        if await tx.scalar(select(LedgerEntry.id).where(LedgerEntry.idempotency_key == key)):
            continue
        tx.add(
            LedgerEntry(
                idempotency_key=key,
                kind="session_minute_refund",
                debit_account_id=charge.credit_account_id,
                credit_account_id=charge.debit_account_id,
                amount=charge.amount,
                unit=charge.unit,
                user_id=charge.user_id,
                session_id=session_id,
                minute=charge.minute,
                memo=reason,
                created_at=now,
            )
        )
        await _move(
            tx,
            debit_id=charge.credit_account_id,
            credit_id=charge.debit_account_id,
            amount=charge.amount,
        )
        if charge.user_id and not kinds:
            kinds = await user_accounts(tx, charge.user_id)
        paid_by = _paid_by(kinds.get(charge.debit_account_id), charge.amount)
        if paid_by.credit_micros:
            given_back[month_of(charge.created_at)] += paid_by.credit_micros
            payer = charge.user_id
        refunded += paid_by
    if payer is not None:
        await budget.give_back(tx, payer, given_back)
    await tx.flush()
    return refunded


def _paid_by(account_kind: str | None, amount: int) -> SessionCharges:
    """One minute's charge by the kind of user account that paid it."""
    if account_kind == "free_minutes":
        return SessionCharges(free_minutes=1)
    if account_kind == "included_minutes":
        return SessionCharges(plan_minutes=1)
    return SessionCharges(credit_minutes=1, credit_micros=amount)


async def _move(tx: AsyncSession, *, debit_id: int, credit_id: int, amount: int) -> None:
    """Keep the cached balances in step with one entry."""
    await tx.execute(
        update(LedgerAccount)
        .where(LedgerAccount.id == debit_id)
        .values(balance=LedgerAccount.balance - amount)
    )
    await tx.execute(
        update(LedgerAccount)
        .where(LedgerAccount.id == credit_id)
        .values(balance=LedgerAccount.balance + amount)
    )


async def user_accounts(tx: AsyncSession, user_id: str) -> dict[int, str]:
    """The user's account ids and their kinds (credit, free_minutes, included_minutes)."""
    rows = await tx.execute(
        select(LedgerAccount.id, LedgerAccount.kind).where(LedgerAccount.user_id == user_id)
    )
    return {int(row[0]): str(row[1]) for row in rows}


async def balances(tx: AsyncSession, user_id: str) -> Balances:
    rows = await tx.execute(
        select(LedgerAccount.kind, LedgerAccount.balance).where(LedgerAccount.user_id == user_id)
    )
    by_kind: dict[str, int] = {row[0]: row[1] for row in rows}
    return Balances(
        free_minutes=by_kind.get("free_minutes", 0),
        credit_micros=by_kind.get("credit", 0),
        included_minutes=by_kind.get("included_minutes", 0),
    )


async def grant_free_minutes(
    tx: AsyncSession, user_id: str, minutes: int, *, key: str, now: datetime
) -> None:
    if minutes > 0:
        await post_entry(
            tx,
            key=key,
            kind="free_minutes_grant",
            debit=FREE_MINUTES_ISSUED,
            credit=free_minutes_account_name(user_id),
            amount=minutes,
            unit=MINUTES,
            now=now,
            user_id=user_id,
            memo=f"{minutes} free minutes",
        )


async def expire_included_minutes(
    tx: AsyncSession, user_id: str, *, key: str, now: datetime
) -> int:
    """Expire what is left of the user's Lab minutes (they do not roll over); how many."""
    account = included_minutes_account_name(user_id)
    left = await tx.scalar(select(LedgerAccount.balance).where(LedgerAccount.name == account))
    if not left or left <= 0:
        return 0
    posted = await post_entry(
        tx,
        key=key,
        kind="included_minutes_expired",
        debit=account,
        credit=INCLUDED_MINUTES_EXPIRED,
        amount=left,
        unit=MINUTES,
        now=now,
        user_id=user_id,
        memo=f"{left} unused Sizzle Lab minutes expired",
    )
    return left if posted else 0


async def grant_included_minutes(
    tx: AsyncSession, user_id: str, minutes: int, *, key: str, now: datetime, memo: str
) -> bool:
    return await post_entry(
        tx,
        key=key,
        kind="included_minutes_grant",
        debit=INCLUDED_MINUTES_ISSUED,
        credit=included_minutes_account_name(user_id),
        amount=minutes,
        unit=MINUTES,
        now=now,
        user_id=user_id,
        memo=memo,
    )


async def grant_credits(
    tx: AsyncSession, user_id: str, micros: int, *, key: str, now: datetime, memo: str
) -> bool:
    return await post_entry(
        tx,
        key=key,
        kind="credit_grant",
        debit=GRANTS,
        credit=credit_account_name(user_id),
        amount=micros,
        unit=USD,
        now=now,
        user_id=user_id,
        memo=memo,
    )


async def list_entries(
    tx: AsyncSession, user_id: str, *, limit: int, offset: int
) -> tuple[list[LedgerEntry], int]:
    """The user's entries, newest first, and how many there are in all."""
    total = await tx.scalar(
        select(func.count()).select_from(LedgerEntry).where(LedgerEntry.user_id == user_id)
    )
    rows = await tx.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.user_id == user_id)
        .order_by(LedgerEntry.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total or 0
