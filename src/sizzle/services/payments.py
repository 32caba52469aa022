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
from datetime import datetime
from typing import Any

import stripe
import structlog
from sqlalchemy import func, select

from sizzle.clock import Clock
from sizzle.db.database import Database
from sizzle.db.models import AutoTopUp, LedgerAccount, Purchase, Refund, User
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
        self.top_ups = TopUps(self)

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
        if kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
            return await self.top_ups.on_payment_intent(obj, succeeded=kind.endswith("succeeded"))
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


# --- auto-top-up ---------------------------------------------------------------------------

MAX_TOP_UP_FAILURES = 3
MAX_THRESHOLD_MICROS = 1_000_000_000  # $1,000


class TopUps:
    """Auto-top-up: a saved card charged off-session, once per crossing of the threshold.

    After each metering pass, `run_pass` arms users whose credit is at or above their threshold
    and charges those armed whose credit fell below it: the arm is cleared in the same
    transaction that opens the purchase, so one crossing is one charge, whatever the number of
    workers or passes. The PaymentIntent's idempotency key is the purchase. A failed charge is
    shown to the user; after MAX_TOP_UP_FAILURES in a row auto-top-up switches itself off."""

    def __init__(self, payments: Payments) -> None:
        self.payments = payments

    async def get(self, user_id: str) -> AutoTopUp | None:
        async with self.payments.db.read() as tx:
            return await tx.get(AutoTopUp, user_id)

    async def configure(
        self, user: User, *, enabled: bool, threshold_micros: int, package_id: str
    ) -> AutoTopUp:
        package = self.payments.package(package_id)
        if not 0 < threshold_micros <= MAX_THRESHOLD_MICROS:
            raise ValidationFailed(
                "the threshold is an amount in dollars above zero and at most $1,000",
                code="bad_threshold",
            )
        async with self.payments.db.transaction() as tx:
            row = await tx.get(AutoTopUp, user.id)
            if enabled and (row is None or not row.payment_method_id):
                raise Conflict(
                    "auto top-up needs a saved card: buy a package by card once first",
                    code="no_saved_card",
                )
            if row is None:
                row = AutoTopUp(user_id=user.id, armed=True, failures=0)
                tx.add(row)
            row.enabled = enabled
            row.threshold_micros = threshold_micros
            row.package = package.id
            row.armed = True  # re-armed: the next pass charges if the credit is below already
            if enabled:
                row.failures, row.last_error = 0, None
            row.updated_at = self.payments.clock.now()
        async with self.payments.db.read() as tx:
            saved = await tx.get(AutoTopUp, user.id)
        assert saved is not None  # noqa: S101
        return saved

    async def remember_card(self, user_id: str, *, customer: str, payment_intent_id: str) -> None:
        """Keep the card a Checkout payment was made with, for auto-top-up (best effort)."""
        client = self.payments.stripe_client()
        try:
            intent = await client.v1.payment_intents.retrieve_async(payment_intent_id)
        except stripe.StripeError as exc:
            log.warning("payments.card_not_saved", user_id=user_id, error=str(exc))
            return
        method = intent.payment_method
        method_id = method if isinstance(method, str) else getattr(method, "id", None)
        if not method_id:
            return
        async with self.payments.db.transaction() as tx:
            row = await tx.get(AutoTopUp, user_id)
            if row is None:
                default = min(self.payments.packages.values(), key=lambda p: p.price_micros)
                row = AutoTopUp(
                    user_id=user_id,
                    enabled=False,
                    threshold_micros=min(default.price_micros, 5_000_000),
                    package=default.id,
                    armed=True,
                    failures=0,
                )
                tx.add(row)
            row.stripe_customer_id = customer
            row.payment_method_id = method_id
            row.updated_at = self.payments.clock.now()

    async def run_pass(self) -> int:
        """Arm and charge as the balances say; how many charges were started."""
        if not self.payments.configured:
            return 0
        db = self.payments.db
        async with db.transaction() as tx:
            rows = (
                await tx.execute(
                    select(AutoTopUp, LedgerAccount.balance)
                    .join(
                        LedgerAccount,
                        (LedgerAccount.user_id == AutoTopUp.user_id)
                        & (LedgerAccount.kind == "credit"),
                    )
                    .where(AutoTopUp.enabled.is_(True))
                )
            ).all()
            due: list[str] = []
            for row, balance in rows:
                if balance >= row.threshold_micros and not row.armed:
                    row.armed = True
                elif row.armed and balance < row.threshold_micros:
                    due.append(row.user_id)
        started = 0
        for user_id in due:
            purchase_id = await self._open(user_id)
            if purchase_id:
                started += 1
                await self._charge(purchase_id)
        return started

    async def _open(self, user_id: str) -> str | None:
        """Disarm and open the top-up purchase, if this user is still due (one per crossing)."""
        payments = self.payments
        async with payments.db.transaction() as tx:
            await lock_billing(tx)
            row = await tx.scalar(
                select(AutoTopUp).where(AutoTopUp.user_id == user_id).with_for_update()
            )
            money = await ledger.balances(tx, user_id)
            if (
                row is None
                or not (row.enabled and row.armed)
                or money.credit_micros >= row.threshold_micros
            ):
                return None
            package = payments.packages.get(row.package)
            if package is None or not row.payment_method_id:
                row.enabled, row.last_error = False, "the package or the card is gone"
                return None
            row.armed = False
            purchase = Purchase(
                id=uuid.uuid4().hex,
                user_id=user_id,
                package=package.id,
                paid_micros=package.price_micros,
                credit_micros=package.credit_micros,
                status="open",
                source="auto_top_up",
                created_at=payments.clock.now(),
            )
            tx.add(purchase)
            return purchase.id

    async def _charge(self, purchase_id: str) -> None:
        payments = self.payments
        async with payments.db.read() as tx:
            purchase = await tx.get(Purchase, purchase_id)
            assert purchase is not None  # noqa: S101 - opened just before
            row = await tx.get(AutoTopUp, purchase.user_id)
            assert row is not None  # noqa: S101
        try:
            intent = await payments.stripe_client().v1.payment_intents.create_async(
                {
                    "amount": purchase.paid_micros // MICROS_PER_CENT,
                    "currency": "usd",
                    "customer": row.stripe_customer_id or "",
                    "payment_method": row.payment_method_id or "",
                    "off_session": True,
                    "confirm": True,
                    "metadata": {"purchase_id": purchase.id, "user_id": purchase.user_id},
                },
                options={"idempotency_key": f"topup:{purchase.id}"},
            )
        except stripe.StripeError as exc:
            await self._failed(purchase.id, exc.user_message or str(exc) or "the card was refused")
            return
        if intent.status == "succeeded":
            await self.on_payment_intent(intent, succeeded=True)
        elif intent.status == "processing":
            async with payments.db.transaction() as tx:
                open_row = await tx.get(Purchase, purchase.id)
                if open_row is not None:
                    open_row.payment_intent_id = intent.id
        else:  # requires_action: the bank wants the cardholder there
            await self._failed(
                purchase.id, "the bank asked for confirmation: buy credit by hand this time"
            )

    async def on_payment_intent(self, intent: dict[str, Any], *, succeeded: bool) -> str:
        """A top-up's PaymentIntent settled (at once, or later by webhook)."""
        reference = (intent.get("metadata") or {}).get("purchase_id")
        if not reference:
            return "ignored"
        if not succeeded:
            error = (intent.get("last_payment_error") or {}).get(
                "message"
            ) or "the card was refused"
            return await self._failed(str(reference), str(error))
        payments = self.payments
        async with payments.db.transaction() as tx:
            await lock_billing(tx)
            purchase = await tx.scalar(
                select(Purchase).where(Purchase.id == str(reference)).with_for_update()
            )
            if purchase is None or purchase.source != "auto_top_up":
                return "unknown_purchase"
            if purchase.status == "paid":
                return "already_credited"
            if intent.get("amount") != purchase.paid_micros // MICROS_PER_CENT:
                log.error("payments.top_up_amount_mismatch", purchase_id=purchase.id)
                return "amount_mismatch"
            await credit_purchase(
                tx, purchase, now=payments.clock.now(), payment_intent_id=intent.get("id")
            )
            row = await tx.get(AutoTopUp, purchase.user_id)
            if row is not None:
                row.failures, row.last_error = 0, None
        return "credited"

    async def _failed(self, purchase_id: str, error: str) -> str:
        async with self.payments.db.transaction() as tx:
            purchase = await tx.scalar(
                select(Purchase).where(Purchase.id == purchase_id).with_for_update()
            )
            if purchase is None or purchase.status != "open":
                return "already_settled"
            purchase.status, purchase.error = "failed", error[:300]
            row = await tx.get(AutoTopUp, purchase.user_id)
            if row is not None:
                row.failures += 1
                row.last_error = error[:300]
                if row.failures >= MAX_TOP_UP_FAILURES:
                    row.enabled = False
                    row.last_error = f"switched off after {row.failures} failed charges: {error}"[
                        :300
                    ]
        log.warning("payments.top_up_failed", purchase_id=purchase_id, error=error)
        return "failed"
