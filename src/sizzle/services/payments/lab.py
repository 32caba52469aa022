"""Sizzle Lab, the monthly plan, as a Stripe subscription.

Subscribing opens a Stripe Checkout page in subscription mode. Stripe is the truth about the
subscription (status, period, cancel at period end): every subscription event makes Sizzle
read the subscription back from Stripe, so events may arrive late, twice or out of order.

Included minutes are granted when Stripe says a month's invoice is paid (`invoice.paid`):
what is left of the last month is expired, the month's minutes are granted (keyed by the
subscription and the month, so once), and they expire at the month's end. The metering pass
does the expiring (`metering.expire_included_minutes`), so minutes stop at the month's end
even when the renewal fails or its event is late. The subscription's payment itself is
recorded in the ledger (Stripe to `platform:subscriptions`), keyed by the invoice.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import stripe
import structlog
from sqlalchemy import select

from sizzle.db.models import AutoTopUp, LabSubscription, User
from sizzle.domain.lab import LAB_NAME, LabPlan
from sizzle.domain.packages import MICROS_PER_CENT
from sizzle.errors import Conflict, NotFound, ProviderUnavailable
from sizzle.services import ledger
from sizzle.services.metering import expire_included_minutes, lock_billing
from sizzle.services.payments import notifications
from sizzle.services.payments.common import STRIPE_ACCOUNT, Checkout
from sizzle.services.payments.stripe_objects import (
    as_dict,
    invoice_period,
    invoice_subscription,
    subscription_period,
)

if TYPE_CHECKING:
    from sizzle.services.payments.checkout import Payments

log = structlog.get_logger(__name__)

# Stripe statuses in which the subscription still exists and may be paid.
LIVE_STATUSES = ("active", "trialing", "past_due", "unpaid", "incomplete")
# Statuses after which no more minutes are granted: what is left expires at once.
ENDED_STATUSES = ("canceled", "incomplete_expired")


class Lab:
    """Subscribing, cancelling and resuming, and the Stripe events that drive the plan."""

    def __init__(self, payments: Payments) -> None:
        self.payments = payments

    @property
    def plan(self) -> LabPlan:
        return self.payments.settings.lab

    async def current(self, user_id: str) -> LabSubscription | None:
        """The user's subscription that counts now: a live one, else the latest."""
        async with self.payments.db.read() as tx:
            rows = list(
                await tx.scalars(
                    select(LabSubscription)
                    .where(
                        LabSubscription.user_id == user_id,
                        LabSubscription.status.not_in(("open", "checkout_failed")),
                    )
                    .order_by(LabSubscription.created_at.desc())
                    .limit(5)
                )
            )
        live = [row for row in rows if row.status in LIVE_STATUSES]
        chosen = live or rows
        return chosen[0] if chosen else None

    async def start_checkout(self, user: User, *, success_url: str, cancel_url: str) -> Checkout:
        """A Stripe Checkout page for the monthly plan; refused if one is already running."""
        client = self.payments.stripe_client()
        current = await self.current(user.id)
        if current is not None and current.status in LIVE_STATUSES:
            raise Conflict(
                f"you already have {LAB_NAME} ({current.status.replace('_', ' ')})",
                code="already_subscribed",
            )
        plan = self.plan
        now = self.payments.clock.now()
        subscription_id = uuid.uuid4().hex
        async with self.payments.db.transaction() as tx:
            tx.add(
                LabSubscription(
                    id=subscription_id,
                    user_id=user.id,
                    status="open",
                    price_micros=plan.price_micros,
                    included_minutes=plan.included_minutes,
                    cancel_at_period_end=False,
                    created_at=now,
                    updated_at=now,
                )
            )
        customer = await self._known_customer(user.id)
        tiers = " and ".join(plan.tiers)
        params: dict[str, Any] = {
            "mode": "subscription",
            "client_reference_id": subscription_id,
            "metadata": {"lab_subscription_id": subscription_id, "user_id": user.id},
            "subscription_data": {
                "metadata": {"lab_subscription_id": subscription_id, "user_id": user.id}
            },
            "success_url": success_url,
            "cancel_url": cancel_url,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": plan.price_cents,
                        "recurring": {"interval": "month"},
                        "product_data": {
                            "name": f"{LAB_NAME}: {plan.included_minutes} GPU minutes a month "
                            f"on {tiers}"
                        },
                    },
                }
            ],
        }
        if customer:
            params["customer"] = customer
        else:
            params["customer_email"] = user.email
        try:
            session = await client.v1.checkout.sessions.create_async(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": f"lab-checkout:{subscription_id}"},
            )
        except stripe.StripeError as exc:
            log.warning("lab.checkout_failed", subscription=subscription_id, error=str(exc))
            async with self.payments.db.transaction() as tx:
                row = await tx.get(LabSubscription, subscription_id)
                if row is not None:
                    row.status = "checkout_failed"
            raise ProviderUnavailable(
                "Stripe did not open a checkout page; nothing was charged, try again in a moment",
                code="payments_unavailable",
            ) from exc
        async with self.payments.db.transaction() as tx:
            row = await tx.get(LabSubscription, subscription_id)
            if row is not None:
                row.checkout_session_id = session.id
        return Checkout(purchase_id=subscription_id, url=str(session.url))

    async def set_cancel_at_period_end(self, user_id: str, *, cancel: bool) -> LabSubscription:
        """Cancel at the end of the paid month (or take that back); Stripe is told first."""
        current = await self.current(user_id)
        if current is None or current.status not in LIVE_STATUSES:
            raise NotFound(f"you have no {LAB_NAME} subscription", code="no_subscription")
        if not current.stripe_subscription_id:
            raise Conflict("the subscription is still being set up; try again in a moment")
        client = self.payments.stripe_client()
        try:
            updated = await client.v1.subscriptions.update_async(
                current.stripe_subscription_id, {"cancel_at_period_end": cancel}
            )
        except stripe.StripeError as exc:
            log.warning("lab.update_failed", subscription=current.id, error=str(exc))
            raise ProviderUnavailable(
                "Stripe did not answer; nothing changed, try again in a moment",
                code="payments_unavailable",
            ) from exc
        await self.apply(as_dict(updated))
        async with self.payments.db.read() as tx:
            row = await tx.get(LabSubscription, current.id)
        assert row is not None  # noqa: S101 - rows are never deleted
        return row

    # --- Stripe events -------------------------------------------------------------------

    async def on_checkout_completed(self, session: dict[str, Any]) -> str:
        """A subscription Checkout finished: link it, then read the subscription back."""
        stripe_id = session.get("subscription")
        if not isinstance(stripe_id, str):
            return "awaiting_payment"
        async with self.payments.db.transaction() as tx:
            row = await _find_by_reference(tx, session)
            if row is None:
                log.warning("lab.unknown_checkout", session=session.get("id"))
                return "unknown_subscription"
            row.stripe_subscription_id = stripe_id
            customer = session.get("customer")
            if isinstance(customer, str):
                row.stripe_customer_id = customer
        return await self.refresh(stripe_id)

    async def refresh(self, stripe_id: str) -> str:
        """Read a subscription back from Stripe and apply it."""
        client = self.payments.stripe_client()
        try:
            subscription = await client.v1.subscriptions.retrieve_async(stripe_id)
        except stripe.StripeError as exc:
            # answered 503, so Stripe sends the event again later
            raise ProviderUnavailable(
                f"could not read subscription {stripe_id} from Stripe: {exc}",
                code="payments_unavailable",
            ) from exc
        return await self.apply(as_dict(subscription))

    async def apply(self, subscription: dict[str, Any]) -> str:
        """Mirror Stripe's subscription; an ended one loses its minutes at once."""
        now = self.payments.clock.now()
        async with self.payments.db.transaction() as tx:
            await lock_billing(tx)
            row = await _find_subscription(tx, subscription)
            if row is None:
                log.warning("lab.unknown_subscription", subscription=subscription.get("id"))
                return "unknown_subscription"
            row.stripe_subscription_id = str(subscription["id"])
            customer = subscription.get("customer")
            if isinstance(customer, str):
                row.stripe_customer_id = customer
            row.status = str(subscription.get("status") or row.status)
            row.cancel_at_period_end = bool(subscription.get("cancel_at_period_end"))
            start, end = subscription_period(subscription)
            if start is not None and end is not None:
                row.current_period_start, row.current_period_end = start, end
            row.updated_at = now
            if row.status in ENDED_STATUSES and (
                row.minutes_expire_at is not None and row.minutes_expire_at > now
            ):
                row.minutes_expire_at = now
                await tx.flush()
                await expire_included_minutes(tx, now=now)
            return row.status

    async def on_invoice_paid(self, invoice: dict[str, Any]) -> str:
        """A month is paid: record the payment, and grant the month's minutes once."""
        stripe_id = invoice_subscription(invoice)
        if stripe_id is None:
            return "ignored"
        start, end = invoice_period(invoice)
        if start is None or end is None:
            log.error("lab.invoice_without_period", invoice=invoice.get("id"))
            return "no_period"
        now = self.payments.clock.now()
        if not await self._is_known(stripe_id):
            await self.refresh(stripe_id)  # links it through the subscription's metadata
        async with self.payments.db.transaction() as tx:
            await lock_billing(tx)
            row = await tx.scalar(
                select(LabSubscription)
                .where(LabSubscription.stripe_subscription_id == stripe_id)
                .with_for_update()
            )
            if row is None:
                return "unknown_subscription"
            paid = invoice.get("amount_paid")
            if isinstance(paid, int) and paid > 0 and invoice.get("currency", "usd") == "usd":
                await ledger.post_entry(
                    tx,
                    key=f"lab:invoice:{invoice['id']}",
                    kind="lab_payment",
                    debit=STRIPE_ACCOUNT,
                    credit=ledger.SUBSCRIPTIONS,
                    amount=paid * MICROS_PER_CENT,
                    unit=ledger.USD,
                    now=now,
                    user_id=row.user_id,
                    memo=f"{LAB_NAME}, {start:%d %b} to {end:%d %b %Y}",
                )
            row.last_error = None
            if row.status in ("incomplete", "past_due", "unpaid", "open"):
                row.status = "active"
            if row.status in ENDED_STATUSES:
                return "subscription_ended"
            if end <= now:
                return "paid_for_a_past_month"
            granted_key = f"lab:{row.id}:grant:{int(start.timestamp())}"
            if await ledger.entry_exists(tx, granted_key):
                return "already_granted"
            # close the last month first: its minutes are charged up to its end, then expired
            await expire_included_minutes(tx, now=now)
            await ledger.expire_included_minutes(
                tx, row.user_id, key=f"{granted_key}:reset", now=now
            )
            await ledger.grant_included_minutes(
                tx,
                row.user_id,
                row.included_minutes,
                key=granted_key,
                now=now,
                memo=f"{LAB_NAME}: {row.included_minutes} minutes until {end:%d %b %Y %H:%M} UTC",
            )
            row.current_period_start, row.current_period_end = start, end
            row.minutes_expire_at = end
            await notifications.lab_month_paid(
                tx,
                row,
                invoice_id=str(invoice.get("id") or granted_key),
                paid_cents=paid if isinstance(paid, int) else None,
                start=start,
                end=end,
                now=now,
            )
        log.info("lab.minutes_granted", subscription=row.id, minutes=row.included_minutes)
        return "granted"

    async def on_invoice_failed(self, invoice: dict[str, Any]) -> str:
        """A month's payment failed: say so (Stripe retries, and its events say what next)."""
        stripe_id = invoice_subscription(invoice)
        if stripe_id is None:
            return "ignored"
        error = (invoice.get("last_finalization_error") or {}).get("message") or (
            "Your card was declined for this month's Sizzle Lab payment. "
            "Update your card; Stripe will try again."
        )
        async with self.payments.db.transaction() as tx:
            row = await tx.scalar(
                select(LabSubscription).where(LabSubscription.stripe_subscription_id == stripe_id)
            )
            if row is None:
                return "unknown_subscription"
            row.last_error = str(error)[:300]
            row.updated_at = self.payments.clock.now()
            await notifications.lab_payment_failed(
                tx,
                row,
                invoice_id=str(invoice.get("id") or stripe_id),
                error=str(error)[:300],
                now=row.updated_at,
            )
        return await self.refresh(stripe_id)

    async def _is_known(self, stripe_id: str) -> bool:
        async with self.payments.db.read() as tx:
            return bool(
                await tx.scalar(
                    select(LabSubscription.id).where(
                        LabSubscription.stripe_subscription_id == stripe_id
                    )
                )
            )

    async def _known_customer(self, user_id: str) -> str | None:
        """The Stripe customer this user already is, so Stripe shows their saved card."""
        async with self.payments.db.read() as tx:
            top_up = await tx.get(AutoTopUp, user_id)
            if top_up is not None and top_up.stripe_customer_id:
                return top_up.stripe_customer_id
            return await tx.scalar(
                select(LabSubscription.stripe_customer_id)
                .where(
                    LabSubscription.user_id == user_id,
                    LabSubscription.stripe_customer_id.is_not(None),
                )
                .order_by(LabSubscription.created_at.desc())
                .limit(1)
            )


async def _find_by_reference(tx: Any, session: dict[str, Any]) -> LabSubscription | None:
    found: LabSubscription | None = None
    if session.get("id"):
        found = await tx.scalar(
            select(LabSubscription)
            .where(LabSubscription.checkout_session_id == session["id"])
            .with_for_update()
        )
    reference = session.get("client_reference_id") or (session.get("metadata") or {}).get(
        "lab_subscription_id"
    )
    if found is None and reference:
        found = await tx.scalar(
            select(LabSubscription).where(LabSubscription.id == str(reference)).with_for_update()
        )
    return found


async def _find_subscription(tx: Any, subscription: dict[str, Any]) -> LabSubscription | None:
    found: LabSubscription | None = await tx.scalar(
        select(LabSubscription)
        .where(LabSubscription.stripe_subscription_id == subscription.get("id"))
        .with_for_update()
    )
    reference = (subscription.get("metadata") or {}).get("lab_subscription_id")
    if found is None and reference:
        found = await tx.scalar(
            select(LabSubscription).where(LabSubscription.id == str(reference)).with_for_update()
        )
    return found
