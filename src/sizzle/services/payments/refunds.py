"""Refunds of purchases (operators only): the credit comes off when the refund is made and
goes back, once, if Stripe's refund fails."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import stripe
import structlog
from sqlalchemy import func, select

from sizzle.db.models import Purchase, Refund
from sizzle.domain.money import usd_text
from sizzle.domain.packages import MICROS_PER_CENT
from sizzle.errors import Conflict, NotFound, ProviderUnavailable, ValidationFailed
from sizzle.services import audit, ledger
from sizzle.services.metering import lock_billing
from sizzle.services.payments.common import BONUS_ACCOUNT, STRIPE_ACCOUNT

if TYPE_CHECKING:
    from sizzle.services.payments.checkout import Payments

log = structlog.get_logger(__name__)


def refundable_micros(*, paid: int, bonus: int, refunded: int, balance: int) -> int:
    """How much of a purchase can go back to the card now, in whole cents.

    What was paid and not refunded yet, and no more than the balance still holds: a refund of
    R takes R of credit back, plus the package bonus in proportion (R x bonus / paid), and
    credit already spent on GPU time cannot be given back."""
    left = paid - refunded
    by_balance = max(balance, 0) * paid // (paid + bonus) if paid + bonus else 0
    cap = max(min(left, by_balance), 0)
    return cap - cap % MICROS_PER_CENT


class Refunds:
    """Refunds of purchases (operators only): the credit comes off when the refund is made
    and goes back if Stripe's refund fails, each once."""

    def __init__(self, payments: Payments) -> None:
        self.payments = payments

    async def refundable(self, purchase_id: str) -> tuple[Purchase, int]:
        async with self.payments.db.read() as tx:
            purchase = await tx.get(Purchase, purchase_id)
            if purchase is None:
                raise NotFound("purchase not found")
            return purchase, await _refundable(tx, purchase)

    async def refund(
        self,
        purchase_id: str,
        *,
        amount_micros: int | None,
        operator: str,
        reason: str | None = None,
    ) -> Refund:
        """Give back `amount_micros` of a paid purchase (None: all that can be)."""
        payments = self.payments
        client = payments.stripe_client()
        refund_id = uuid.uuid4().hex
        now = payments.clock.now()
        async with payments.db.transaction() as tx:
            await lock_billing(tx)
            purchase = await tx.scalar(
                select(Purchase).where(Purchase.id == purchase_id).with_for_update()
            )
            if purchase is None:
                raise NotFound("purchase not found")
            if purchase.status != "paid" or not purchase.payment_intent_id:
                raise Conflict("only a paid purchase can be refunded", code="not_refundable")
            cap = await _refundable(tx, purchase)
            amount = cap if amount_micros is None else amount_micros
            if cap <= 0:
                raise Conflict(
                    "nothing of this purchase can be refunded: it was refunded or spent",
                    code="nothing_to_refund",
                )
            if amount <= 0 or amount % MICROS_PER_CENT or amount > cap:
                raise ValidationFailed(
                    f"a refund is whole cents, more than zero and at most "
                    f"${usd_text(cap)} (paid, not refunded and not spent)",
                    code="bad_refund_amount",
                )
            bonus = amount * (purchase.credit_micros - purchase.paid_micros) // purchase.paid_micros
            refund = Refund(
                id=refund_id,
                purchase_id=purchase.id,
                amount_micros=amount,
                bonus_micros=bonus,
                status="pending",
                requested_by=operator[:64],
                reason=(reason or None) and reason[:200],
                created_at=now,
            )
            tx.add(refund)
            await _take_back(tx, refund, purchase.user_id, now=now)
            audit.record(
                tx,
                "admin.refund",
                actor=operator[:64],
                now=now,
                user_id=purchase.user_id,
                target=f"purchase:{purchase.id}",
                detail=f"{amount} usd_micros" + (f": {reason}" if reason else ""),
            )
            payment_intent = purchase.payment_intent_id
        try:
            answer = await client.v1.refunds.create_async(
                {
                    "payment_intent": payment_intent,
                    "amount": amount // MICROS_PER_CENT,
                    "metadata": {"refund_id": refund_id, "purchase_id": purchase_id},
                },
                options={"idempotency_key": f"refund:{refund_id}"},
            )
        except stripe.StripeError as exc:
            await self.restore(refund_id, why=f"Stripe refused the refund: {exc.user_message}")
            raise ProviderUnavailable(
                f"Stripe refused the refund, so the credit stays: {exc.user_message or exc}",
                code="refund_failed",
            ) from exc
        async with payments.db.transaction() as tx:
            row = await tx.get(Refund, refund_id)
            assert row is not None  # noqa: S101 - written above; rows are not deleted
            row.stripe_refund_id = answer.id
            if row.status == "pending" and answer.status in ("succeeded", "pending"):
                row.status = "succeeded" if answer.status == "succeeded" else "pending"
        if answer.status in ("failed", "canceled"):
            await self.restore(refund_id, why=f"Stripe's refund {answer.status}")
        async with payments.db.read() as tx:
            done = await tx.get(Refund, refund_id)
        assert done is not None  # noqa: S101
        log.info("payments.refunded", refund_id=refund_id, status=done.status, micros=amount)
        return done

    async def restore(self, refund_id: str, *, why: str) -> str:
        """A refund that failed: its credit goes back on the balance, once."""
        payments = self.payments
        async with payments.db.transaction() as tx:
            await lock_billing(tx)
            refund = await tx.scalar(select(Refund).where(Refund.id == refund_id).with_for_update())
            if refund is None:
                return "unknown_refund"
            if refund.status == "failed":
                return "already_restored"
            purchase = await tx.get(Purchase, refund.purchase_id)
            assert purchase is not None  # noqa: S101 - a refund always has its purchase
            now = payments.clock.now()
            user_credit = ledger.credit_account_name(purchase.user_id)
            for suffix, amount, account in (
                ("", refund.amount_micros, STRIPE_ACCOUNT),
                (":bonus", refund.bonus_micros, BONUS_ACCOUNT),
            ):
                if amount > 0:
                    await ledger.post_entry(
                        tx,
                        key=f"refund:{refund.id}{suffix}:restored",
                        kind="refund_restored",
                        debit=account,
                        credit=user_credit,
                        amount=amount,
                        unit=ledger.USD,
                        now=now,
                        user_id=purchase.user_id,
                        memo=why[:200],
                    )
            refund.status = "failed"
        log.warning("payments.refund_restored", refund_id=refund_id, why=why)
        return "restored"

    async def on_refund_event(self, refund: dict[str, Any]) -> str:
        """`refund.failed` / `refund.updated` from Stripe: a failed refund gives the credit back."""
        if refund.get("status") not in ("failed", "canceled"):
            return "ignored"
        async with self.payments.db.read() as tx:
            row = await tx.scalar(select(Refund).where(Refund.stripe_refund_id == refund.get("id")))
            if row is None:
                reference = (refund.get("metadata") or {}).get("refund_id")
                row = await tx.get(Refund, str(reference)) if reference else None
        if row is None:
            return "unknown_refund"
        return await self.restore(row.id, why=f"Stripe's refund {refund.get('status')}")


async def _refundable(tx: Any, purchase: Purchase) -> int:
    refunded = await tx.scalar(
        select(func.coalesce(func.sum(Refund.amount_micros), 0)).where(
            Refund.purchase_id == purchase.id, Refund.status != "failed"
        )
    )
    money = await ledger.balances(tx, purchase.user_id)
    return refundable_micros(
        paid=purchase.paid_micros,
        bonus=purchase.credit_micros - purchase.paid_micros,
        refunded=int(refunded or 0),
        balance=money.credit_micros,
    )


async def _take_back(tx: Any, refund: Refund, user_id: str, *, now: Any) -> None:
    user_credit = ledger.credit_account_name(user_id)
    for suffix, amount, account, kind in (
        ("", refund.amount_micros, STRIPE_ACCOUNT, "refund"),
        (":bonus", refund.bonus_micros, BONUS_ACCOUNT, "refund_bonus"),
    ):
        if amount > 0:
            await ledger.post_entry(
                tx,
                key=f"refund:{refund.id}{suffix}",
                kind=kind,
                debit=user_credit,
                credit=account,
                amount=amount,
                unit=ledger.USD,
                now=now,
                user_id=user_id,
                memo=refund.reason or "refund to the card",
            )
