"""Buying credit with Stripe Checkout, exactly once.

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
from dataclasses import dataclass
from typing import Any

import stripe
import structlog
from sqlalchemy import func, select

from sizzle.clock import Clock
from sizzle.db.database import Database
from sizzle.db.models import Purchase, Refund, User
from sizzle.domain.money import usd_text
from sizzle.domain.packages import MICROS_PER_CENT, CreditPackage
from sizzle.errors import (
    BadRequest,
    Conflict,
    NotFound,
    ProviderUnavailable,
    SizzleError,
    ValidationFailed,
)
from sizzle.services import ledger
from sizzle.services.metering import lock_billing
from sizzle.settings import Settings

log = structlog.get_logger(__name__)

STRIPE_ACCOUNT = "platform:stripe"
BONUS_ACCOUNT = "platform:bonuses"
SIGNATURE_TOLERANCE_SECONDS = 300


class PaymentsNotConfigured(SizzleError):
    code = "payments_not_configured"
    status_code = 503


class BadSignature(BadRequest):
    code = "bad_signature"


@dataclass(frozen=True)
class Checkout:
    purchase_id: str
    url: str


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
        try:
            event = stripe.Webhook.construct_event(  # type: ignore[no-untyped-call]
                payload, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError as exc:
            raise BadSignature(f"the Stripe signature does not verify: {exc}") from None
        except ValueError as exc:
            raise BadRequest(f"the event is not JSON: {exc}", code="bad_payload") from None
        kind = event["type"]
        obj = event["data"]["object"]
        if kind == "checkout.session.completed":
            if obj.get("payment_status") in ("paid", "no_payment_required"):
                return await self.settle(obj)
            return "awaiting_payment"
        if kind == "checkout.session.async_payment_succeeded":
            return await self.settle(obj)
        if kind == "checkout.session.async_payment_failed":
            return await self._fail(obj)
        if kind in ("refund.failed", "refund.updated", "charge.refund.updated"):
            return await self.refunds.on_refund_event(obj)
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
            now = self.clock.now()
            package_bonus = purchase.credit_micros - purchase.paid_micros
            await ledger.post_entry(
                tx,
                key=f"purchase:{purchase.id}",
                kind="purchase",
                debit=STRIPE_ACCOUNT,
                credit=ledger.credit_account_name(purchase.user_id),
                amount=purchase.paid_micros,
                unit=ledger.USD,
                now=now,
                user_id=purchase.user_id,
                memo=f"bought the ${usd_text(purchase.paid_micros)} package",
            )
            if package_bonus > 0:
                await ledger.post_entry(
                    tx,
                    key=f"purchase:{purchase.id}:bonus",
                    kind="purchase_bonus",
                    debit=BONUS_ACCOUNT,
                    credit=ledger.credit_account_name(purchase.user_id),
                    amount=package_bonus,
                    unit=ledger.USD,
                    now=now,
                    user_id=purchase.user_id,
                    memo="package bonus",
                )
            purchase.status = "paid"
            purchase.paid_at = now
            purchase.checkout_session_id = purchase.checkout_session_id or session.get("id")
            intent = session.get("payment_intent")
            purchase.payment_intent_id = intent if isinstance(intent, str) else None
        log.info("payments.credited", purchase_id=purchase.id, micros=purchase.credit_micros)
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


# --- refunds -------------------------------------------------------------------------------


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
