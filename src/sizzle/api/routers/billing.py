"""Balance and the ledger, as the user sees them."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from sizzle.api.deps import CurrentUser, PagingDep, TxDep
from sizzle.api.schemas import BalanceOut, Page, TransactionOut, usd
from sizzle.api.views import transaction_out
from sizzle.db.models import LedgerAccount
from sizzle.services import ledger

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])


@router.get("/balance", response_model=BalanceOut)
async def balance(user: CurrentUser, tx: TxDep) -> BalanceOut:
    funds = await ledger.balances(tx, user.id)
    return BalanceOut(
        balance_usd=usd(funds.credit_micros),
        balance_micros=funds.credit_micros,
        free_minutes=funds.free_minutes,
    )


@router.get("/transactions", response_model=Page[TransactionOut])
async def transactions(user: CurrentUser, tx: TxDep, paging: PagingDep) -> Page[TransactionOut]:
    entries, total = await ledger.list_entries(
        tx, user.id, limit=paging.limit, offset=paging.offset
    )
    mine = set(await tx.scalars(select(LedgerAccount.id).where(LedgerAccount.user_id == user.id)))
    return Page(items=[transaction_out(e, user_account_ids=mine) for e in entries], total=total)
