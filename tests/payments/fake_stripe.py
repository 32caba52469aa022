"""A fake of the Stripe API calls Sizzle makes that localstripe does not serve: Checkout
Sessions (create and retrieve, payment and subscription mode), and the subscriptions and
invoices such a Checkout makes, as Stripe documents them: form-encoded requests with
bracketed keys, Bearer secret key, JSON answers, `Idempotency-Key` honoured."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SECRET_KEY = "sk_test_sizzle_fake"
WEBHOOK_SECRET = "whsec_test_sizzle_fake"


@dataclass
class FakeStripe:
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    by_idempotency_key: dict[str, str] = field(default_factory=dict)
    ids: Any = field(default_factory=lambda: itertools.count(1))
    fail_creates: int = 0  # the next n creates answer 500
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    refund_status: str = "succeeded"  # what a new refund answers: succeeded, pending, failed
    refuse_refunds: bool = False  # answer refunds with a 400 card error

    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    # what an off-session PaymentIntent does: succeeded, processing, requires_action, declined
    intent_outcome: str = "succeeded"

    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def subscribe(self, session_id: str, *, start: int, end: int) -> dict[str, Any]:
        """As if the customer paid a subscription-mode Checkout page: the session is complete
        and names an active subscription whose first month is [start, end)."""
        session = self.sessions[session_id]
        sub_id = f"sub_test_{next(self.ids):04d}"
        self.subscriptions[sub_id] = {
            "id": sub_id,
            "object": "subscription",
            "customer": "cus_test_1",
            "status": "active",
            "cancel_at_period_end": False,
            "metadata": session["subscription_metadata"],
            "items": {
                "object": "list",
                "data": [{"current_period_start": start, "current_period_end": end}],
            },
        }
        session.update(
            status="complete", payment_status="paid", subscription=sub_id, customer="cus_test_1"
        )
        return session

    def invoice(self, sub_id: str, *, start: int, end: int, paid: bool = True) -> dict[str, Any]:
        """The invoice of one month of a subscription (Stripe API 2025-03-31 and later)."""
        sub = self.subscriptions[sub_id]
        item = sub["items"]["data"][0]
        item.update(current_period_start=start, current_period_end=end)
        if not paid:
            sub["status"] = "past_due"
        return {
            "id": f"in_test_{next(self.ids):04d}",
            "object": "invoice",
            "currency": "usd",
            "amount_paid": self.subscription_price_cents if paid else 0,
            "status": "paid" if paid else "open",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": sub_id},
            },
            "lines": {"object": "list", "data": [{"period": {"start": start, "end": end}}]},
        }

    subscription_price_cents: int = 1900

    def pay(self, session_id: str) -> dict[str, Any]:
        """As if the customer paid on the Checkout page (with a card Stripe keeps)."""
        session = self.sessions[session_id]
        if session.get("payment_intent"):
            return session
        intent_id = f"pi_test_{next(self.ids):04d}"
        self.payment_intents[intent_id] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "currency": "usd",
            "customer": "cus_test_1",
            "payment_method": "pm_test_visa",
            "status": "succeeded",
            "metadata": {},
        }
        session.update(
            payment_status="paid",
            status="complete",
            payment_intent=intent_id,
            customer="cus_test_1",
        )
        return session


def build_app(state: FakeStripe) -> FastAPI:
    app = FastAPI()

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {SECRET_KEY}"

    def unauthorized() -> JSONResponse:
        return JSONResponse(
            {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}},
            status_code=401,
        )

    @app.post("/v1/checkout/sessions")
    async def create(request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        form = {key: str(value) for key, value in (await request.form()).items()}
        state.requests.append(("create", form, dict(request.headers)))
        key = request.headers.get("idempotency-key")
        if key and key in state.by_idempotency_key:
            return state.sessions[state.by_idempotency_key[key]]
        if state.fail_creates:
            state.fail_creates -= 1
            return JSONResponse(
                {"error": {"type": "api_error", "message": "Something went wrong"}},
                status_code=500,
            )
        session_id = f"cs_test_{next(state.ids):04d}"
        session = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "mode": form.get("mode"),
            "status": "open",
            "payment_status": "unpaid",
            "currency": form.get("line_items[0][price_data][currency]"),
            "amount_total": int(form.get("line_items[0][price_data][unit_amount]", "0"))
            * int(form.get("line_items[0][quantity]", "1")),
            "client_reference_id": form.get("client_reference_id"),
            "customer_email": form.get("customer_email"),
            "metadata": {
                k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")
            },
            "success_url": form.get("success_url"),
            "cancel_url": form.get("cancel_url"),
            "payment_intent": None,
            "subscription_metadata": {
                k[len("subscription_data[metadata][") : -1]: v
                for k, v in form.items()
                if k.startswith("subscription_data[metadata][")
            },
        }
        state.sessions[session_id] = session
        if key:
            state.by_idempotency_key[key] = session_id
        return session

    @app.post("/v1/refunds")
    async def refund(request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        form = {key: str(value) for key, value in (await request.form()).items()}
        state.requests.append(("refund", form, dict(request.headers)))
        key = request.headers.get("idempotency-key")
        if key and key in state.by_idempotency_key:
            return state.refunds[state.by_idempotency_key[key]]
        if state.refuse_refunds:
            return JSONResponse(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "charge_already_refunded",
                        "message": "Charge has already been refunded.",
                    }
                },
                status_code=400,
            )
        refund_id = f"re_test_{next(state.ids):04d}"
        refund = {
            "id": refund_id,
            "object": "refund",
            "amount": int(form["amount"]),
            "currency": "usd",
            "payment_intent": form.get("payment_intent"),
            "status": state.refund_status,
            "metadata": {
                k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")
            },
        }
        state.refunds[refund_id] = refund
        if key:
            state.by_idempotency_key[key] = refund_id
        return refund

    @app.post("/v1/payment_intents")
    async def create_intent(request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        form = {key: str(value) for key, value in (await request.form()).items()}
        state.requests.append(("payment_intent", form, dict(request.headers)))
        key = request.headers.get("idempotency-key")
        if key and key in state.by_idempotency_key:
            return state.payment_intents[state.by_idempotency_key[key]]
        intent_id = f"pi_test_{next(state.ids):04d}"
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": int(form["amount"]),
            "currency": form.get("currency"),
            "customer": form.get("customer"),
            "payment_method": form.get("payment_method"),
            "status": state.intent_outcome,
            "metadata": {
                k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")
            },
        }
        if state.intent_outcome == "declined":
            intent["status"] = "requires_payment_method"
            error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
                "payment_intent": intent,
            }
            return JSONResponse({"error": error}, status_code=402)
        state.payment_intents[intent_id] = intent
        if key:
            state.by_idempotency_key[key] = intent_id
        return intent

    @app.get("/v1/payment_intents/{intent_id}")
    async def retrieve_intent(intent_id: str, request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        if intent_id not in state.payment_intents:
            return JSONResponse(
                {"error": {"type": "invalid_request_error", "message": "No such payment_intent"}},
                status_code=404,
            )
        return state.payment_intents[intent_id]

    @app.get("/v1/subscriptions/{sub_id}")
    async def retrieve_subscription(sub_id: str, request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        if sub_id not in state.subscriptions:
            return JSONResponse(
                {"error": {"type": "invalid_request_error", "message": "No such subscription"}},
                status_code=404,
            )
        return state.subscriptions[sub_id]

    @app.post("/v1/subscriptions/{sub_id}")
    async def update_subscription(sub_id: str, request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        form = {key: str(value) for key, value in (await request.form()).items()}
        state.requests.append(("subscription", form, dict(request.headers)))
        sub = state.subscriptions[sub_id]
        if "cancel_at_period_end" in form:
            sub["cancel_at_period_end"] = form["cancel_at_period_end"] == "true"
        return sub

    @app.get("/v1/checkout/sessions/{session_id}")
    async def retrieve(session_id: str, request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        if session_id not in state.sessions:
            return JSONResponse(
                {"error": {"type": "invalid_request_error", "message": "No such session"}},
                status_code=404,
            )
        return state.sessions[session_id]

    return app


def signed(
    event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, at: int | None = None
) -> tuple[bytes, str]:
    """An event body and its `Stripe-Signature` header, by Stripe's scheme: HMAC-SHA256 of
    `<timestamp>.<body>` with the endpoint's secret, as `t=<timestamp>,v1=<hex>`."""
    body = json.dumps(event).encode()
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={timestamp},v1={mac}"


_events = itertools.count(1)


def event(kind: str, session: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_test_{next(_events)}",
        "object": "event",
        "type": kind,
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": session},
    }
