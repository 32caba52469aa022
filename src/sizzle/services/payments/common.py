"""What the payment flows share: the platform accounts, their errors, and crediting a paid
purchase once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from sizzle.db.models import Purchase
from sizzle.domain.money import usd_text
from sizzle.errors import BadRequest, SizzleError
from sizzle.services import ledger

log = structlog.get_logger(__name__)

STRIPE_ACCOUNT = "platform:stripe"
BONUS_ACCOUNT = "platform:bonuses"
SIGNATURE_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class Checkout:
    """A Stripe Checkout page opened for something of ours (a purchase, a subscription)."""

    purchase_id: str
    url: str


class PaymentsNotConfigured(SizzleError):
    code = "payments_not_configured"
    status_code = 503


class BadSignature(BadRequest):
    code = "bad_signature"


async def credit_purchase(
    tx: Any,
    purchase: Purchase,
    *,
    now: datetime,
    checkout_session_id: str | None = None,
    payment_intent_id: str | None = None,
) -> None:
    """Put a paid purchase's credit (and its package bonus) on the balance, once: the entries
    are keyed by the purchase. The caller holds the billing lock and the purchase row."""
    user_credit = ledger.credit_account_name(purchase.user_id)
    await ledger.post_entry(
        tx,
        key=f"purchase:{purchase.id}",
        kind="purchase",
        debit=STRIPE_ACCOUNT,
        credit=user_credit,
        amount=purchase.paid_micros,
        unit=ledger.USD,
        now=now,
        user_id=purchase.user_id,
        memo=(
            f"auto top-up of ${usd_text(purchase.paid_micros)}"
            if purchase.source == "auto_top_up"
            else f"bought the ${usd_text(purchase.paid_micros)} package"
        ),
    )
    bonus = purchase.credit_micros - purchase.paid_micros
    if bonus > 0:
        await ledger.post_entry(
            tx,
            key=f"purchase:{purchase.id}:bonus",
            kind="purchase_bonus",
            debit=BONUS_ACCOUNT,
            credit=user_credit,
            amount=bonus,
            unit=ledger.USD,
            now=now,
            user_id=purchase.user_id,
            memo="package bonus",
        )
    purchase.status = "paid"
    purchase.paid_at = now
    purchase.error = None
    purchase.checkout_session_id = purchase.checkout_session_id or checkout_session_id
    purchase.payment_intent_id = purchase.payment_intent_id or payment_intent_id
    log.info("payments.credited", purchase_id=purchase.id, micros=purchase.credit_micros)
