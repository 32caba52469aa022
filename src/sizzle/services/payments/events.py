"""Stripe's webhook events as Sizzle reads them: the signature checked on the raw body, the
JSON parsed with a depth limit, and every field a handler reads checked for its type and
size. A signed event that is malformed all the same (a field missing, of the wrong type, too
long for its column, a NUL that PostgreSQL cannot hold) is a 400 that says what is wrong and
a warning in the log, never a 500 halfway through a handler.

The shapes list only what the handlers read; every other field passes as Stripe sent it.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import stripe
import structlog
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
)

from sizzle.errors import BadRequest, ValidationFailed
from sizzle.safe_json import parse_json
from sizzle.services.payments.common import SIGNATURE_TOLERANCE_SECONDS, BadSignature

log = structlog.get_logger(__name__)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Stripe's ids fit the 255-character columns they are kept in.
StripeId = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_no_nul)]
Text = Annotated[str, StringConstraints(max_length=5000), AfterValidator(_no_nul)]
# Cents: at most $1bn, so micro-dollars stay far inside the ledger's 64-bit integers.
Cents = Annotated[StrictInt, Field(ge=0, le=100_000_000_000)]
Epoch = Annotated[StrictInt, Field(ge=0, le=253_402_300_799)]  # to the end of year 9999
Metadata = dict[Annotated[str, StringConstraints(max_length=40)], Text]
Expandable = StripeId | dict[str, Any]  # an id, or the object itself when expanded


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Error(_Shape):
    message: Text | None = None


class _CheckoutSession(_Shape):
    id: StripeId | None = None
    mode: Text | None = None
    payment_status: Text | None = None
    amount_total: Cents | None = None
    currency: Text | None = None
    payment_intent: Expandable | None = None
    customer: Expandable | None = None
    subscription: Expandable | None = None
    client_reference_id: StripeId | None = None
    metadata: Metadata | None = None


class _PaymentIntent(_Shape):
    id: StripeId | None = None
    amount: Cents | None = None
    metadata: Metadata | None = None
    last_payment_error: _Error | None = None


class _Refund(_Shape):
    id: StripeId | None = None
    status: Text | None = None
    metadata: Metadata | None = None


class _Subscription(_Shape):
    id: StripeId


class _Period(_Shape):
    start: Epoch | None = None
    end: Epoch | None = None


class _Line(_Shape):
    period: _Period | None = None


class _Lines(_Shape):
    data: list[_Line] | None = None


class _SubscriptionDetails(_Shape):
    subscription: Expandable | None = None


class _Parent(_Shape):
    subscription_details: _SubscriptionDetails | None = None


class _Invoice(_Shape):
    id: StripeId
    subscription: Expandable | None = None
    parent: _Parent | None = None
    lines: _Lines | None = None
    amount_paid: Cents | None = None
    currency: Text | None = None
    last_finalization_error: _Error | None = None


class _Data(_Shape):
    object: dict[str, Any]


class _Event(_Shape):
    id: StripeId | None = None
    type: Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_no_nul)]
    data: _Data


def _object_shape(kind: str) -> type[_Shape] | None:
    """The shape of the object an event of this kind carries, where a handler reads it."""
    if kind.startswith("checkout.session."):
        return _CheckoutSession
    if kind.startswith("payment_intent."):
        return _PaymentIntent
    if kind.startswith(("refund.", "charge.refund.")):
        return _Refund
    if kind.startswith("invoice."):
        return _Invoice
    if kind.startswith("customer.subscription."):
        return _Subscription
    return None


class MalformedEvent(BadRequest):
    code = "bad_event"


def read_event(payload: bytes, signature: str, secret: str) -> tuple[str, dict[str, Any]]:
    """The kind of a signed event and the object it carries, checked; BadSignature or
    MalformedEvent (400) otherwise."""
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(  # type: ignore[no-untyped-call]
            text, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
        )
    except UnicodeDecodeError:
        _malformed({}, "not UTF-8 text")
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(f"the Stripe signature does not verify: {exc}") from None
    try:
        parsed = parse_json(payload)
    except ValidationFailed as exc:
        _malformed({}, exc.message)
    try:
        event = _Event.model_validate(parsed)
    except ValidationError as exc:
        _malformed(parsed, _problems(exc))
    shape = _object_shape(event.type)
    if shape is not None:
        try:
            shape.model_validate(event.data.object)
        except ValidationError as exc:
            _malformed(parsed, _problems(exc, at="data.object."))
    return event.type, event.data.object


def _problems(exc: ValidationError, *, at: str = "") -> str:
    return "; ".join(
        f"{at}{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors()[:5]
    )


def _malformed(parsed: object, problem: str) -> NoReturn:
    envelope = parsed if isinstance(parsed, dict) else {}
    log.warning(
        "payments.malformed_event",
        event_id=str(envelope.get("id"))[:255],
        type=str(envelope.get("type"))[:200],
        problem=problem[:1000],
    )
    raise MalformedEvent(f"the event is malformed: {problem}"[:1000])
