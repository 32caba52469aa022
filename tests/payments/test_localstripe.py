"""Sizzle's own Stripe calls against localstripe, a stateful Stripe running as a real process:
the off-session PaymentIntent of auto-top-up (charged and declined) and refunds (full and
partial), each checked in localstripe afterwards. Stripe's events are signed by Stripe's
scheme; localstripe has no Checkout, so a test pays a purchase as Checkout would: a
PaymentIntent confirmed in localstripe with a card attached to a customer, then the signed
`checkout.session.completed` for it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select, update

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import AutoTopUp, LedgerEntry, Purchase, Refund, User
from tests.helpers import assert_error, launch_active_session, log_in, make_user, run_for
from tests.payments.fake_stripe import event, signed
from tests.payments.localstripe_server import LocalShop, LocalStripe
from tests.payments.shop import BILLING, balance, purchase_entries

ADMIN = "/api/v1/admin"
TOP_UP = f"{BILLING}/auto-top-up"
VISA = "4242424242424242"
DECLINES_CHARGES = "4000000000000341"  # attaches to a customer; every charge is declined


async def deliver(shop: LocalShop, kind: str, obj: dict[str, Any]) -> httpx.Response:
    body, header = signed(event(kind, obj))
    return await shop.client.post(
        f"{BILLING}/webhook", content=body, headers={"Stripe-Signature": header}
    )


async def pay_by_card(
    shop: LocalShop, db: Database, clock: FakeClock, user: User, package_id: str
) -> tuple[str, dict[str, Any]]:
    """A purchase paid as Checkout would pay it; (purchase id, its PaymentIntent in
    localstripe). Sizzle saves the card from that PaymentIntent, which it fetches from
    localstripe."""
    stripe = LocalStripe(shop.url)
    package = shop.state.payments.package(package_id)
    purchase_id = uuid.uuid4().hex
    async with db.transaction() as tx:  # what start_checkout opens before it asks for a session
        tx.add(
            Purchase(
                id=purchase_id,
                user_id=user.id,
                package=package.id,
                paid_micros=package.price_micros,
                credit_micros=package.credit_micros,
                status="open",
                checkout_session_id=f"cs_test_{purchase_id}",
                created_at=clock.now(),
            )
        )
    customer, method = await stripe.card(VISA, email=user.email)
    intent = await stripe.post(
        "/v1/payment_intents",
        amount=package.price_cents,
        currency="usd",
        customer=customer,
        payment_method=method,
        confirm=True,
        metadata={"purchase_id": purchase_id, "user_id": user.id},
    )
    assert intent["status"] == "succeeded"
    session = {
        "id": f"cs_test_{purchase_id}",
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": package.price_cents,
        "currency": "usd",
        "client_reference_id": purchase_id,
        "metadata": {"purchase_id": purchase_id, "user_id": user.id},
        "customer": customer,
        "payment_intent": intent["id"],
    }
    response = await deliver(shop, "checkout.session.completed", session)
    assert response.json() == {"result": "credited"}, response.text
    return purchase_id, intent


async def saved_card(db: Database, user_id: str) -> tuple[str | None, str | None]:
    async with db.read() as tx:
        row = await tx.get(AutoTopUp, user_id)
    assert row is not None
    return row.stripe_customer_id, row.payment_method_id


async def top_ups(db: Database) -> list[Purchase]:
    async with db.read() as tx:
        return list(await tx.scalars(select(Purchase).where(Purchase.source == "auto_top_up")))


async def turn_on(shop: LocalShop, auth: dict[str, str], threshold: str, package: str) -> None:
    response = await shop.client.put(
        TOP_UP, json={"enabled": True, "threshold_usd": threshold, "package": package}, headers=auth
    )
    assert response.status_code == 200, response.text


async def test_auto_top_up_charges_the_saved_card_in_localstripe_once(
    stripe_shop: LocalShop, db: Database, clock: FakeClock
) -> None:
    shop, stripe = stripe_shop, LocalStripe(stripe_shop.url)
    user = await make_user(db, now=clock.now(), free_minutes=0)
    auth = await log_in(shop.client, email=user.email)
    _, bought = await pay_by_card(shop, db, clock, user, "5")
    customer, method = bought["customer"], bought["payment_method"]
    assert await saved_card(db, user.id) == (customer, method)
    await turn_on(shop, auth, threshold="4", package="20")

    await launch_active_session(shop.client, shop.state, clock, auth=auth)
    await run_for(shop.state, clock, seconds=420)  # 7 minutes at $0.15: $5.00 -> $3.95

    (top_up,) = await top_ups(db)
    assert (top_up.status, top_up.paid_micros) == ("paid", 20_000_000)
    assert top_up.payment_intent_id and top_up.payment_intent_id != bought["id"]
    intent = await stripe.get(f"/v1/payment_intents/{top_up.payment_intent_id}")
    assert (intent["amount"], intent["currency"], intent["status"]) == (2000, "usd", "succeeded")
    assert (intent["customer"], intent["payment_method"]) == (customer, method)
    assert intent["metadata"] == {"purchase_id": top_up.id, "user_id": user.id}
    charge = await stripe.get(f"/v1/charges/{intent['latest_charge']['id']}")
    assert (charge["amount"], charge["paid"], charge["captured"]) == (2000, True, True)
    assert await balance(shop.client, auth) == "25.95"  # $20 + 10% bonus landed

    for _ in range(2):  # Stripe's event for the charge, delivered twice: no more credit
        response = await deliver(shop, "payment_intent.succeeded", intent)
        assert response.json() == {"result": "already_credited"}
    await run_for(shop.state, clock, seconds=300)  # well above the threshold: no new charge
    assert len(await stripe.payment_intents()) == 2  # the purchase and the one top-up
    assert await purchase_entries(db) == 3  # $5; $20 and its bonus
    assert await balance(shop.client, auth) == "25.20"  # 5 more minutes at $0.15


async def test_a_card_localstripe_declines_is_recorded_and_not_credited(
    stripe_shop: LocalShop, db: Database, clock: FakeClock
) -> None:
    shop, stripe = stripe_shop, LocalStripe(stripe_shop.url)
    user = await make_user(db, now=clock.now(), free_minutes=0)
    auth = await log_in(shop.client, email=user.email)
    _, bought = await pay_by_card(shop, db, clock, user, "5")
    customer = bought["customer"]
    # the customer's card is replaced by one that attaches but whose charges are declined
    declining = await stripe.attach_card(DECLINES_CHARGES, customer=customer)
    async with db.transaction() as tx:
        await tx.execute(
            update(AutoTopUp)
            .where(AutoTopUp.user_id == user.id)
            .values(payment_method_id=declining)
        )
    await turn_on(shop, auth, threshold="4", package="5")

    await launch_active_session(shop.client, shop.state, clock, auth=auth)
    await run_for(shop.state, clock, seconds=420)
    await run_for(shop.state, clock, seconds=60)  # still below: no second try this crossing

    (top_up,) = await top_ups(db)
    assert (top_up.status, top_up.error) == ("failed", "Your card was declined.")
    (intent,) = [
        i for i in await stripe.payment_intents() if i["metadata"].get("purchase_id") == top_up.id
    ]
    assert (intent["amount"], intent["customer"], intent["payment_method"]) == (
        500,
        customer,
        declining,
    )
    assert intent["status"] == "requires_payment_method"
    assert intent["last_payment_error"]["code"] == "card_declined"
    seen = (await shop.client.get(TOP_UP, headers=auth)).json()
    assert (seen["enabled"], seen["failures"], seen["last_error"]) == (
        True,
        1,
        "Your card was declined.",
    )
    response = await deliver(shop, "payment_intent.payment_failed", intent)
    assert response.json() == {"result": "already_settled"}  # counted once
    assert (await shop.client.get(TOP_UP, headers=auth)).json()["failures"] == 1
    assert len(await stripe.payment_intents()) == 2
    assert await purchase_entries(db) == 1  # only the $5 bought by hand
    assert await balance(shop.client, auth) == "3.80"  # 8 minutes at $0.15, nothing added


async def operator(shop: LocalShop, db: Database, clock: FakeClock) -> dict[str, str]:
    admin = await make_user(db, now=clock.now(), is_admin=True)
    return await log_in(shop.client, email=admin.email)


async def refund(
    shop: LocalShop, admin: dict[str, str], purchase_id: str, body: dict[str, str]
) -> dict[str, Any]:
    response = await shop.client.post(
        f"{ADMIN}/purchases/{purchase_id}/refund", json=body, headers=admin
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def in_localstripe(shop: LocalShop, db: Database, refund_id: str) -> dict[str, Any]:
    """The Stripe refund Sizzle made for its refund `refund_id`, as localstripe holds it."""
    async with db.read() as tx:
        row = await tx.get(Refund, refund_id)
    assert row is not None and row.stripe_refund_id
    return await LocalStripe(shop.url).get(f"/v1/refunds/{row.stripe_refund_id}")


async def refund_entries(db: Database, user_id: str) -> dict[str, int]:
    async with db.read() as tx:
        rows = await tx.execute(
            select(LedgerEntry.kind, func.sum(LedgerEntry.amount))
            .where(LedgerEntry.user_id == user_id, LedgerEntry.kind.like("refund%"))
            .group_by(LedgerEntry.kind)
        )
        return {kind: int(total) for kind, total in rows}


async def test_a_full_refund_is_made_in_localstripe(
    stripe_shop: LocalShop, db: Database, clock: FakeClock
) -> None:
    shop, stripe = stripe_shop, LocalStripe(stripe_shop.url)
    user = await make_user(db, now=clock.now(), free_minutes=0)
    auth = await log_in(shop.client, email=user.email)
    purchase_id, intent = await pay_by_card(shop, db, clock, user, "20")
    assert await balance(shop.client, auth) == "22.00"
    admin = await operator(shop, db, clock)

    done = await refund(shop, admin, purchase_id, {})
    assert (done["amount_usd"], done["bonus_taken_back_usd"], done["status"]) == (
        "20.00",
        "2.00",
        "succeeded",
    )
    made = await in_localstripe(shop, db, done["id"])
    assert (made["amount"], made["currency"], made["status"]) == (2000, "usd", "succeeded")
    assert made["payment_intent"] == intent["id"]
    assert made["charge"] == intent["latest_charge"]["id"]
    assert made["metadata"] == {"refund_id": done["id"], "purchase_id": purchase_id}
    charge = await stripe.get(f"/v1/charges/{made['charge']}")
    assert (charge["amount_refunded"], charge["refunded"]) == (2000, True)

    assert await refund_entries(db, user.id) == {"refund": 20_000_000, "refund_bonus": 2_000_000}
    assert await balance(shop.client, auth) == "0.00"
    again = await shop.client.post(
        f"{ADMIN}/purchases/{purchase_id}/refund", json={}, headers=admin
    )
    assert_error(again, 409, "nothing_to_refund")
    assert (await stripe.get("/v1/refunds"))["total_count"] == 1


async def test_partial_refunds_are_made_in_localstripe(
    stripe_shop: LocalShop, db: Database, clock: FakeClock
) -> None:
    shop, stripe = stripe_shop, LocalStripe(stripe_shop.url)
    user = await make_user(db, now=clock.now(), free_minutes=0)
    auth = await log_in(shop.client, email=user.email)
    purchase_id, intent = await pay_by_card(shop, db, clock, user, "20")
    admin = await operator(shop, db, clock)

    first = await refund(shop, admin, purchase_id, {"amount_usd": "5", "reason": "asked"})
    assert (first["amount_usd"], first["bonus_taken_back_usd"]) == ("5.00", "0.50")
    made = await in_localstripe(shop, db, first["id"])
    assert (made["amount"], made["payment_intent"], made["status"]) == (
        500,
        intent["id"],
        "succeeded",
    )
    assert await balance(shop.client, auth) == "16.50"  # $22 - $5 - $0.50 of bonus
    listed = (await shop.client.get(f"{ADMIN}/purchases", headers=admin)).json()["items"]
    assert [(p["id"], p["refundable_usd"]) for p in listed] == [(purchase_id, "15.00")]

    rest = await refund(shop, admin, purchase_id, {})
    assert (rest["amount_usd"], rest["bonus_taken_back_usd"]) == ("15.00", "1.50")
    made_rest = await in_localstripe(shop, db, rest["id"])
    assert (made_rest["amount"], made_rest["payment_intent"]) == (1500, intent["id"])
    charge = await stripe.get(f"/v1/charges/{intent['latest_charge']['id']}")
    assert (charge["amount_refunded"], charge["refunded"]) == (2000, True)
    assert sorted(r["amount"] for r in (await stripe.get("/v1/refunds"))["data"]) == [500, 1500]

    assert await refund_entries(db, user.id) == {"refund": 20_000_000, "refund_bonus": 2_000_000}
    assert await balance(shop.client, auth) == "0.00"
