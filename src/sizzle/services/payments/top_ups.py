"""Auto-top-up: a saved card charged off-session, once per crossing of the threshold."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import stripe
import structlog
from sqlalchemy import select

from sizzle.db.models import AutoTopUp, LedgerAccount, Purchase, User
from sizzle.domain.packages import MICROS_PER_CENT
from sizzle.errors import Conflict, ValidationFailed
from sizzle.services import ledger
from sizzle.services.metering import lock_billing
from sizzle.services.payments import notifications
from sizzle.services.payments.common import credit_purchase

if TYPE_CHECKING:
    from sizzle.services.payments.checkout import Payments

log = structlog.get_logger(__name__)

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
            # Arming reads a balance and writes `armed`: under the billing lock (as `_open`
            # disarms), or a pass in another worker that read a balance above the threshold just
            # before metering and `_open` ran could re-arm the user after `_open` disarmed them,
            # and the same crossing would be charged to the card twice.
            await lock_billing(tx)
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
            await notifications.top_up_charged(tx, purchase, row, now=payments.clock.now())
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
            await notifications.top_up_failed(
                tx, purchase, row, error, now=self.payments.clock.now()
            )
        log.warning("payments.top_up_failed", purchase_id=purchase_id, error=error)
        return "failed"
