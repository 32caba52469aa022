"""Operator pages: purchases and their refunds (admins only)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from sizzle.api.deps import PagingDep, StateDep
from sizzle.api.schemas import usd
from sizzle.db.models import Purchase, Refund, User
from sizzle.domain.money import usd_to_micros
from sizzle.errors import SizzleError, ValidationFailed
from sizzle.state import AppState
from sizzle.web.deps import CsrfChecked, Operator
from sizzle.web.render import render
from sizzle.web.routes.admin import ID_PATTERN, clean, known_id

router = APIRouter(include_in_schema=False)


def parse_refund_amount(text: str) -> int | None:
    """A refund typed in dollars as micro-dollars; empty: all that can be refunded (None)."""
    cleaned = text.strip().removeprefix("$").strip()
    if not cleaned:
        return None
    try:
        return usd_to_micros(cleaned)
    except (ValueError, ArithmeticError):
        raise ValidationFailed(
            f"{text.strip()!r} is not an amount in dollars, like 5 or 2.50",
            code="bad_refund_amount",
        ) from None


def _refund_notice(refund: Refund, email: str) -> tuple[str, str]:
    """What the page says after a refund: ("ok" or "error", the text)."""
    amount, bonus = usd(refund.amount_micros), usd(refund.bonus_micros)
    with_bonus = f" and ${bonus} of bonus credit" if refund.bonus_micros else ""
    if refund.status == "failed":
        return "error", (
            f"Stripe's refund of ${amount} to the card of {email} failed, so the credit was "
            "put back on their balance."
        )
    if refund.status == "pending":
        return "ok", (
            f"The refund of ${amount} to the card of {email} is pending at Stripe; ${amount} of "
            f"credit{with_bonus} came off their balance (it goes back if the refund fails)."
        )
    return "ok", (
        f"Refunded ${amount} to the card of {email}; ${amount} of credit{with_bonus} came off "
        "their balance."
    )


async def _purchases_page(
    request: Request,
    state: AppState,
    user: User,
    *,
    who: str,
    limit: int,
    offset: int,
    status_code: int = 200,
    error: str | None = None,
    done: str | None = None,
) -> Response:
    query = select(Purchase, User.email).join(User, User.id == Purchase.user_id)
    count = select(func.count()).select_from(Purchase)
    if who:
        query = query.where(Purchase.user_id == who)
        count = count.where(Purchase.user_id == who)
    async with state.db.read() as tx:
        found = list(
            await tx.execute(
                query.order_by(Purchase.created_at.desc(), Purchase.id).limit(limit).offset(offset)
            )
        )
        total = (await tx.scalar(count)) or 0
        owner = await tx.get(User, who) if who else None
        refunds: dict[str, list[Refund]] = {}
        if found:
            for refund in await tx.scalars(
                select(Refund)
                .where(Refund.purchase_id.in_([purchase.id for purchase, _ in found]))
                .order_by(Refund.created_at, Refund.id)
            ):
                refunds.setdefault(refund.purchase_id, []).append(refund)
    rows = []
    for purchase, email in found:
        refundable = None  # only a paid purchase can go back to the card
        if purchase.status == "paid" and purchase.payment_intent_id:
            _, refundable = await state.payments.refunds.refundable(purchase.id)
        rows.append(
            {
                "purchase": purchase,
                "email": email,
                "refundable": refundable,
                "refunds": refunds.get(purchase.id, []),
            }
        )
    return render(
        request,
        "admin/purchases.html",
        user=user,
        status_code=status_code,
        rows=rows,
        total=total,
        who=who,
        owner=owner,
        limit=limit,
        offset=offset,
        error=error,
        done=done,
    )


@router.get("/admin/purchases", response_class=HTMLResponse)
async def purchases(
    request: Request,
    state: StateDep,
    user: Operator,
    paging: PagingDep,
    who: Annotated[str, Query(alias="user", max_length=64)] = "",
    done: Annotated[str, Query(max_length=20)] = "",
    refund_id: Annotated[str, Query(alias="refund", max_length=64)] = "",
) -> Response:
    """Purchases, newest first (one user's with `?user=`), what each can refund now, and
    its refunds; a paid purchase with something left to refund has a refund form."""
    done_text = error_text = None
    if done == "refunded" and ID_PATTERN.fullmatch(refund_id):
        async with state.db.read() as tx:
            refund = await tx.get(Refund, refund_id)
            purchase = await tx.get(Purchase, refund.purchase_id) if refund else None
            buyer = await tx.get(User, purchase.user_id) if purchase else None
        if refund is not None and buyer is not None:
            kind, text = _refund_notice(refund, buyer.email)
            done_text, error_text = (text, None) if kind == "ok" else (None, text)
    return await _purchases_page(
        request,
        state,
        user,
        who=who.strip(),
        limit=paging.limit,
        offset=paging.offset,
        done=done_text,
        error=error_text,
    )


@router.post("/admin/purchases/{purchase_id}/refund", dependencies=[CsrfChecked])
async def refund_purchase(
    request: Request,
    state: StateDep,
    operator: Operator,
    purchase_id: str,
    amount: Annotated[str, Form(max_length=50)] = "",
    reason: Annotated[str, Form(max_length=200)] = "",
    who: Annotated[str, Form(alias="user", max_length=64)] = "",
) -> Response:
    """Give money back to the card: all that can be refunded, or the amount typed in. The
    credit (and the bonus in proportion) comes off at once and goes back if Stripe refuses."""
    who = who.strip()
    try:
        micros = parse_refund_amount(amount)
        done = await state.payments.refunds.refund(
            known_id(purchase_id, "purchase"),
            amount_micros=micros,
            operator=f"operator:{operator.id}",
            reason=clean(reason) or None,
        )
    except SizzleError as exc:
        return await _purchases_page(
            request,
            state,
            operator,
            who=who,
            limit=50,
            offset=0,
            status_code=exc.status_code,
            error=exc.message,
        )
    query = {"done": "refunded", "refund": done.id} | ({"user": who} if who else {})
    return RedirectResponse(f"/admin/purchases?{urlencode(query)}", status_code=303)
