"""Buying credit with Stripe Checkout, exactly once; the entry point of every payment flow.

A purchase starts as an `open` row and a Stripe Checkout Session. Credit lands only when
Stripe says the session is paid: through the signed webhook (`checkout.session.completed`
with `payment_status: paid`, or `checkout.session.async_payment_succeeded` for delayed
methods), or when the return page asks Stripe itself. Both go through `settle`, whose ledger
entries are keyed by the purchase, so a second event, a replay or a race adds nothing.
A failure (`checkout.session.async_payment_failed`) marks an open purchase failed; a paid one
stays paid whatever arrives after it.
"""

from __future__ import annotations

import uuid
from typing import Any

import stripe
import structlog
from sqlalchemy import select

from sizzle.clock import Clock
from sizzle.db.database import Database
from sizzle.db.models import Purchase, User
from sizzle.domain.packages import MICROS_PER_CENT, CreditPackage
from sizzle.errors import NotFound, ProviderUnavailable
from sizzle.services.metering import lock_billing
from sizzle.services.payments.common import Checkout, PaymentsNotConfigured, credit_purchase
from sizzle.services.payments.events import read_event
from sizzle.services.payments.lab import Lab
from sizzle.services.payments.refunds import Refunds
from sizzle.services.payments.top_ups import TopUps
from sizzle.settings import Settings

log = structlog.get_logger(__name__)


class Payments:
    """Stripe Checkout for credit packages, and the webhook that settles them."""

    def __init__(self, settings: Settings, db: Database, clock: Clock) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.packages = {package.id: package for package in settings.packages}
        self._client = (
            stripe.StripeClient(
                settings.stripe_secret_key,
                base_addresses={"api": settings.stripe_api_base.rstrip("/")},
                http_client=stripe.HTTPXClient(),
                max_network_retries=2,
            )
            if settings.stripe_secret_key
            else None
        )
        self.refunds = Refunds(self)
        self.top_ups = TopUps(self)
        self.lab = Lab(self)

    @property
    def configured(self) -> bool:
        return self._client is not None

    def package(self, package_id: str) -> CreditPackage:
        package = self.packages.get(package_id)
        if package is None:
            raise NotFound(
                f"no credit package {package_id!r}; packages: {', '.join(self.packages)}",
                code="unknown_package",
            )
        return package

    def stripe_client(self) -> stripe.StripeClient:
        if self._client is None:
            raise PaymentsNotConfigured(
                "card payments are not set up on this Sizzle yet; an operator can add credit"
            )
        return self._client

    async def start_checkout(
        self, user: User, package_id: str, *, success_url: str, cancel_url: str
    ) -> Checkout:
        """An open purchase and the Stripe Checkout page to pay it on."""
        package = self.package(package_id)
        client = self.stripe_client()
        purchase_id = uuid.uuid4().hex
        async with self.db.transaction() as tx:
            tx.add(
                Purchase(
                    id=purchase_id,
                    user_id=user.id,
                    package=package.id,
                    paid_micros=package.price_micros,
                    credit_micros=package.credit_micros,
                    status="open",
                    created_at=self.clock.now(),
                )
            )
        bonus = f" + {package.bonus_percent}% bonus" if package.bonus_percent else ""
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": purchase_id,
            "customer_email": user.email,
            "metadata": {"purchase_id": purchase_id, "user_id": user.id},
            "success_url": success_url.replace("{PURCHASE_ID}", purchase_id),
            # keep the card for auto-top-up (charged only if the user turns it on)
            "customer_creation": "always",
            "payment_intent_data": {"setup_future_usage": "off_session"},
            "cancel_url": cancel_url,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": package.price_cents,
                        "product_data": {"name": f"Sizzle credit ${package.price_usd}{bonus}"},
                    },
                }
            ],
        }
        try:
            session = await client.v1.checkout.sessions.create_async(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": f"checkout:{purchase_id}"},
            )
        except stripe.StripeError as exc:
            log.warning("payments.checkout_failed", purchase_id=purchase_id, error=str(exc))
            async with self.db.transaction() as tx:
                row = await tx.get(Purchase, purchase_id)
                if row is not None:
                    row.status = "failed"
            raise ProviderUnavailable(
                "Stripe did not open a checkout page; nothing was charged, try again in a moment",
                code="payments_unavailable",
            ) from exc
        async with self.db.transaction() as tx:
            row = await tx.get(Purchase, purchase_id)
            if row is not None:
                row.checkout_session_id = session.id
        log.info("payments.checkout_started", purchase_id=purchase_id, session=session.id)
        return Checkout(purchase_id=purchase_id, url=str(session.url))

    async def handle_webhook(self, payload: bytes, signature: str) -> str:
        """Verify and apply one Stripe event; what it did, in a word."""
        secret = self.settings.stripe_webhook_secret
        if not secret:
            raise PaymentsNotConfigured("the Stripe webhook secret is not set")
        kind, obj = read_event(payload, signature, secret)
        if kind == "checkout.session.completed" and obj.get("mode") == "subscription":
            return await self.lab.on_checkout_completed(obj)
        if kind == "checkout.session.completed":
            if obj.get("payment_status") in ("paid", "no_payment_required"):
                return await self.settle(obj)
            return "awaiting_payment"
        if kind == "checkout.session.async_payment_succeeded":
            return await self.settle(obj)
        if kind == "checkout.session.async_payment_failed":
            return await self._fail(obj)
        if kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
            return await self.top_ups.on_payment_intent(obj, succeeded=kind.endswith("succeeded"))
        if kind in ("refund.failed", "refund.updated", "charge.refund.updated"):
            return await self.refunds.on_refund_event(obj)
        if kind in ("invoice.paid", "invoice.payment_succeeded"):
            return await self.lab.on_invoice_paid(obj)
        if kind == "invoice.payment_failed":
            return await self.lab.on_invoice_failed(obj)
        if kind.startswith("customer.subscription."):
            return await self.lab.refresh(str(obj["id"]))
        return "ignored"

    async def refresh(self, purchase_id: str, *, user_id: str) -> Purchase:
        """The purchase as Stripe sees it now: settles it if it is paid (the return page, which
        may be quicker than the webhook)."""
        async with self.db.read() as tx:
            purchase = await tx.get(Purchase, purchase_id)
        if purchase is None or purchase.user_id != user_id:
            raise NotFound("purchase not found")
        if purchase.status == "open" and purchase.checkout_session_id and self._client:
            try:
                session = await self._client.v1.checkout.sessions.retrieve_async(
                    purchase.checkout_session_id
                )
            except stripe.StripeError as exc:
                log.warning("payments.refresh_failed", purchase_id=purchase_id, error=str(exc))
            else:
                if session.payment_status in ("paid", "no_payment_required"):
                    await self.settle(session)
        async with self.db.read() as tx:
            refreshed = await tx.get(Purchase, purchase_id)
        assert refreshed is not None  # noqa: S101 - it existed a moment ago; rows are not deleted
        return refreshed

    async def settle(self, session: dict[str, Any]) -> str:
        """Credit a paid Checkout Session's purchase, once."""
        async with self.db.transaction() as tx:
            await lock_billing(tx)
            purchase = await _find(tx, session)
            if purchase is None:
                log.warning("payments.unknown_session", session=session.get("id"))
                return "unknown_purchase"
            paid_cents = session.get("amount_total")
            if session.get("currency") != "usd" or paid_cents != (
                purchase.paid_micros // MICROS_PER_CENT
            ):
                log.error(
                    "payments.amount_mismatch",
                    purchase_id=purchase.id,
                    amount_total=paid_cents,
                    currency=session.get("currency"),
                )
                return "amount_mismatch"
            if purchase.status == "paid":
                return "already_credited"
            intent = session.get("payment_intent")
            await credit_purchase(
                tx,
                purchase,
                now=self.clock.now(),
                checkout_session_id=session.get("id"),
                payment_intent_id=intent if isinstance(intent, str) else None,
            )
            user_id = purchase.user_id
        customer = session.get("customer")
        if isinstance(customer, str) and isinstance(intent, str):
            await self.top_ups.remember_card(user_id, customer=customer, payment_intent_id=intent)
        return "credited"

    async def _fail(self, session: dict[str, Any]) -> str:
        async with self.db.transaction() as tx:
            purchase = await _find(tx, session)
            if purchase is None:
                return "unknown_purchase"
            if purchase.status != "open":
                return f"already_{purchase.status}"
            purchase.status = "failed"
        return "failed"


async def _find(tx: Any, session: dict[str, Any]) -> Purchase | None:
    """The purchase a Checkout Session is for: by its id, else by our reference on it."""
    session_id = session.get("id")
    found = None
    if session_id:
        found = await tx.scalar(
            select(Purchase).where(Purchase.checkout_session_id == session_id).with_for_update()
        )
    if found is None:
        reference = session.get("client_reference_id") or (session.get("metadata") or {}).get(
            "purchase_id"
        )
        if reference:
            found = await tx.scalar(
                select(Purchase).where(Purchase.id == str(reference)).with_for_update()
            )
    return found
