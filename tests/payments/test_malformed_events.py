"""Signed but malformed Stripe events: a 400 that says what is wrong and a warning in the log,
never a 500, and nothing credited; on both databases (a NUL or an overlong id would reach
PostgreSQL otherwise)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from sizzle.db.database import Database
from tests.helpers import assert_error, sign_up
from tests.payments.fake_stripe import WEBHOOK_SECRET, event
from tests.payments.shop import BILLING, Shop, balance, buy, purchase_entries


def signed_raw(body: bytes) -> str:
    """A valid `Stripe-Signature` for any body, JSON or not."""
    at = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


async def post_signed(shop: Shop, body: bytes) -> Any:
    return await shop.client.post(
        f"{BILLING}/webhook", content=body, headers={"Stripe-Signature": signed_raw(body)}
    )


def session_event(session: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps(event("checkout.session.completed", {**session, **changes})).encode()


NOT_EVENTS = {
    "not JSON": b"{not json",
    "not UTF-8": b'{"type": "\xff"}',
    "a list": b"[1, 2]",
    "nested 100k deep": b"[" * 100_000,
    "no type": json.dumps({"id": "evt_1", "data": {"object": {}}}).encode(),
    "a number for the type": json.dumps({"type": 7, "data": {"object": {}}}).encode(),
    "no data": json.dumps({"type": "checkout.session.completed"}).encode(),
    "text for the object": json.dumps(
        {"type": "checkout.session.completed", "data": {"object": "cs_1"}}
    ).encode(),
    "a subscription without an id": json.dumps(
        {"type": "customer.subscription.updated", "data": {"object": {"status": "active"}}}
    ).encode(),
    "an invoice ending after year 9999": json.dumps(
        {
            "type": "invoice.paid",
            "data": {
                "object": {
                    "id": "in_1",
                    "subscription": "sub_1",
                    "lines": {"data": [{"period": {"start": 0, "end": 10**20}}]},
                }
            },
        }
    ).encode(),
    "an error that is not an object": json.dumps(
        {
            "type": "payment_intent.payment_failed",
            "data": {
                "object": {"metadata": {"purchase_id": "p"}, "last_payment_error": "declined"}
            },
        }
    ).encode(),
}


@pytest.mark.parametrize("what", list(NOT_EVENTS))
async def test_a_signed_body_that_is_no_event_is_a_400(
    shop: Shop, what: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = await post_signed(shop, NOT_EVENTS[what])
    error = assert_error(response, 400, "bad_event")
    assert error["message"].startswith("the event is")
    assert any(
        isinstance(record.msg, dict) and record.msg.get("event") == "payments.malformed_event"
        for record in caplog.records
        if record.levelname == "WARNING"
    )


async def test_a_paid_session_with_fields_of_the_wrong_shape_credits_nothing(
    shop: Shop, db: Database
) -> None:
    auth = await sign_up(shop.client)
    session = shop.stripe.pay(str((await buy(shop, auth, "20"))["id"]))
    for changes in (
        {"amount_total": "2000"},  # text, not a number of cents
        {"amount_total": 10**30},  # past any 64-bit integer
        {"id": ["cs_1"]},
        {"id": "cs_" + "x" * 300},  # longer than the column
        {"client_reference_id": "abc\x00"},  # PostgreSQL text cannot hold a NUL
        {"metadata": ["purchase_id"]},
        {"customer": 12},
        {"payment_intent": True},
    ):
        response = await post_signed(shop, session_event(session, **changes))
        error = assert_error(response, 400, "bad_event")
        assert "data.object." in error["message"], changes
    assert await balance(shop.client, auth) == "0.00"
    assert await purchase_entries(db) == 0
    # the well-formed event still credits
    response = await post_signed(shop, session_event(session))
    assert response.json() == {"result": "credited"}
