"""What Sizzle tells a user about their card being charged: auto-top-up charged or failed, and
Sizzle Lab's months paid or not. Each is made in the transaction that records the payment,
keyed by the purchase or Stripe's invoice, so once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import AutoTopUp, LabSubscription, Purchase
from sizzle.domain.charges import count, dollars
from sizzle.domain.lab import LAB_NAME
from sizzle.domain.packages import MICROS_PER_CENT
from sizzle.services.notifications import Kind, notify

BILLING_LINK = "/billing"


async def top_up_charged(
    tx: AsyncSession, purchase: Purchase, row: AutoTopUp | None, *, now: datetime
) -> None:
    below = f" because your credit fell below {dollars(row.threshold_micros)}" if row else ""
    await notify(
        tx,
        user_id=purchase.user_id,
        kind=Kind.TOP_UP_CHARGED,
        key=f"top_up_charged:{purchase.id}",
        title=f"Auto top-up: {dollars(purchase.credit_micros)} credit added",
        body=(
            f"Your saved card was charged {dollars(purchase.paid_micros)}{below}, and "
            f"{dollars(purchase.credit_micros)} credit was added. You can change or switch off "
            "auto top-up on the Billing page."
        ),
        now=now,
        link=f"{BILLING_LINK}#auto-top-up",
    )


async def top_up_failed(
    tx: AsyncSession, purchase: Purchase, row: AutoTopUp | None, error: str, *, now: datetime
) -> None:
    switched_off = " Auto top-up is now off." if row is not None and not row.enabled else ""
    await notify(
        tx,
        user_id=purchase.user_id,
        kind=Kind.TOP_UP_FAILED,
        key=f"top_up_failed:{purchase.id}",
        title="Auto top-up failed: no credit was added",
        body=(
            f"We tried to charge your saved card {dollars(purchase.paid_micros)}, and it did not "
            f"go through: {error.rstrip('.')}.{switched_off} Running sessions stop when your "
            "credit runs out: buy credit on the Billing page to keep them going."
        ),
        now=now,
        link=f"{BILLING_LINK}#auto-top-up",
    )


async def lab_month_paid(
    tx: AsyncSession,
    row: LabSubscription,
    *,
    invoice_id: str,
    paid_cents: int | None,
    start: datetime,
    end: datetime,
    now: datetime,
) -> None:
    period = f"from {start:%d %b} to {end:%d %b %Y}"
    if paid_cents:
        paid = f"You paid {dollars(paid_cents * MICROS_PER_CENT)} for {LAB_NAME} {period}."
    else:
        paid = f"{LAB_NAME} is on {period}."
    await notify(
        tx,
        user_id=row.user_id,
        kind=Kind.PLAN_RENEWAL,
        key=f"plan_renewal:{invoice_id}",
        title=f"{LAB_NAME}: a new month of GPU minutes",
        body=(
            f"{paid} You have {count(row.included_minutes, f'{LAB_NAME} minute')} to use "
            f"until {end:%d %b %Y %H:%M} UTC; what is left then does not carry over."
        ),
        now=now,
        link=f"{BILLING_LINK}#lab",
    )


async def lab_payment_failed(
    tx: AsyncSession, row: LabSubscription, *, invoice_id: str, error: str, now: datetime
) -> None:
    await notify(
        tx,
        user_id=row.user_id,
        kind=Kind.PLAN_RENEWAL,
        key=f"plan_payment_failed:{invoice_id}",
        title=f"{LAB_NAME}: this month's payment failed",
        body=(
            f"{error.rstrip('.')}. Until a payment goes through, no new {LAB_NAME} minutes are "
            "added; your sessions use your free minutes and credit instead."
        ),
        now=now,
        link=f"{BILLING_LINK}#lab",
    )
