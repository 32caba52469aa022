"""Refunds: an operator gives back what was bought and not yet spent; the credit (and the
bonus in proportion) comes off at once and goes back if Stripe's refund fails, each once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.services.payments import refundable_micros
from tests.helpers import assert_error, grant, launch_active_session, log_in, make_user, run_for
from tests.payments.shop import BILLING, Shop, balance, buy, deliver

ADMIN = "/api/v1/admin"


async def paid_purchase(shop: Shop, auth: dict[str, str], package: str = "20") -> str:
    session = shop.stripe.pay(str((await buy(shop, auth, package))["id"]))
    assert (await deliver(shop, "checkout.session.completed", session)).json()[
        "result"
    ] == "credited"
    return str(session["client_reference_id"])


async def operator(shop: Shop, db: Database, clock: FakeClock) -> dict[str, str]:
    admin = await make_user(db, now=clock.now(), is_admin=True)
    return await log_in(shop.client, email=admin.email)


async def test_a_full_refund_takes_back_the_credit_and_the_bonus(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    auth = await log_in(
        shop.client, email=(await make_user(db, now=clock.now(), free_minutes=0)).email
    )
    purchase_id = await paid_purchase(shop, auth, "20")
    admin = await operator(shop, db, clock)
    listed = (await shop.client.get(f"{ADMIN}/purchases", headers=admin)).json()["items"]
    assert [(p["id"], p["refundable_usd"]) for p in listed] == [(purchase_id, "20.00")]
    response = await shop.client.post(
        f"{ADMIN}/purchases/{purchase_id}/refund", json={}, headers=admin
    )
    assert response.status_code == 201, response.text
    refund = response.json()
    assert (refund["amount_usd"], refund["bonus_taken_back_usd"], refund["status"]) == (
        "20.00",
        "2.00",
        "succeeded",
    )
    (_, form, headers) = shop.stripe.requests[-1]
    assert form["amount"] == "2000" and form["payment_intent"] in shop.stripe.payment_intents
    assert headers["idempotency-key"] == f"refund:{refund['id']}"
    assert await balance(shop.client, auth) == "0.00"
    again = await shop.client.post(
        f"{ADMIN}/purchases/{purchase_id}/refund", json={}, headers=admin
    )
    assert_error(again, 409, "nothing_to_refund")


async def test_a_refund_is_capped_at_what_was_not_spent(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now(), free_minutes=0)
    auth = await log_in(shop.client, email=user.email)
    purchase_id = await paid_purchase(shop, auth, "5")  # $5, no bonus
    await launch_active_session(shop.client, shop.state, clock, auth=auth)
    await run_for(shop.state, clock, seconds=600)  # 10 minutes at $0.15
    assert await balance(shop.client, auth) == "3.50"
    admin = await operator(shop, db, clock)
    too_much = await shop.client.post(
        f"{ADMIN}/purchases/{purchase_id}/refund", json={"amount_usd": "4"}, headers=admin
    )
    assert "3.50" in assert_error(too_much, 422, "bad_refund_amount")["message"]
    for bad in ("0", "-1", "1.001", "lots"):
        response = await shop.client.post(
            f"{ADMIN}/purchases/{purchase_id}/refund", json={"amount_usd": bad}, headers=admin
        )
        assert_error(response, 422, "bad_refund_amount")
    partial = await shop.client.post(
        f"{ADMIN}/purchases/{purchase_id}/refund", json={"amount_usd": "1.25"}, headers=admin
    )
    assert partial.status_code == 201
    assert await balance(shop.client, auth) == "2.25"
    rest = await shop.client.post(f"{ADMIN}/purchases/{purchase_id}/refund", json={}, headers=admin)
    assert rest.json()["amount_usd"] == "2.25"
    assert await balance(shop.client, auth) == "0.00"


async def test_a_refund_stripe_refuses_leaves_the_credit(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    auth = await log_in(
        shop.client, email=(await make_user(db, now=clock.now(), free_minutes=0)).email
    )
    purchase_id = await paid_purchase(shop, auth, "20")
    admin = await operator(shop, db, clock)
    shop.stripe.refuse_refunds = True
    response = await shop.client.post(
        f"{ADMIN}/purchases/{purchase_id}/refund", json={}, headers=admin
    )
    assert "already been refunded" in assert_error(response, 503, "refund_failed")["message"]
    assert await balance(shop.client, auth) == "22.00"
    shop.stripe.refuse_refunds = False
    listed = (await shop.client.get(f"{ADMIN}/purchases", headers=admin)).json()["items"]
    assert listed[0]["refundable_usd"] == "20.00"  # the failed refund does not count


async def test_a_later_refund_failed_event_puts_the_credit_back_once(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    auth = await log_in(
        shop.client, email=(await make_user(db, now=clock.now(), free_minutes=0)).email
    )
    purchase_id = await paid_purchase(shop, auth, "20")
    admin = await operator(shop, db, clock)
    shop.stripe.refund_status = "pending"
    refund = (
        await shop.client.post(
            f"{ADMIN}/purchases/{purchase_id}/refund", json={"amount_usd": "10"}, headers=admin
        )
    ).json()
    assert refund["status"] == "pending"
    assert await balance(shop.client, auth) == "11.00"  # $10 and $1 of bonus taken back
    (stripe_refund,) = shop.stripe.refunds.values()
    failed = {**stripe_refund, "status": "failed"}
    for _ in range(2):
        response = await deliver(shop, "refund.failed", failed)
        assert response.status_code == 200
    assert await balance(shop.client, auth) == "22.00"
    assert response.json() == {"result": "already_restored"}


async def test_refunds_are_for_operators_only(shop: Shop, db: Database, clock: FakeClock) -> None:
    auth = await log_in(shop.client, email=(await make_user(db, now=clock.now())).email)
    purchase_id = await paid_purchase(shop, auth, "5")
    assert_error(await shop.client.get(f"{ADMIN}/purchases", headers=auth), 403)
    response = await shop.client.post(
        f"{ADMIN}/purchases/{purchase_id}/refund", json={}, headers=auth
    )
    assert_error(response, 403)
    assert await balance(shop.client, auth) == "5.00"


@given(
    paid_cents=st.integers(min_value=1, max_value=1_000_000),
    bonus_percent=st.integers(min_value=0, max_value=100),
    refunded_cents=st.integers(min_value=0, max_value=1_000_000),
    balance=st.integers(min_value=-(10**9), max_value=10**12),
)
def test_the_refundable_amount_never_takes_more_than_the_balance_holds(
    paid_cents: int, bonus_percent: int, refunded_cents: int, balance: int
) -> None:
    paid = paid_cents * 10_000
    bonus = paid * bonus_percent // 100
    refunded = min(refunded_cents * 10_000, paid)
    cap = refundable_micros(paid=paid, bonus=bonus, refunded=refunded, balance=balance)
    assert cap >= 0 and cap % 10_000 == 0
    assert cap <= paid - refunded
    assert cap + cap * bonus // paid <= max(balance, 0)


async def test_grants_are_not_refundable_money(shop: Shop, db: Database, clock: FakeClock) -> None:
    user = await make_user(db, now=clock.now(), free_minutes=0)
    auth = await log_in(shop.client, email=user.email)
    purchase_id = await paid_purchase(shop, auth, "5")
    await grant(db, email=user.email, usd="100", now=clock.now())
    admin = await operator(shop, db, clock)
    listed = (await shop.client.get(f"{ADMIN}/purchases?user_id={user.id}", headers=admin)).json()
    assert [(p["id"], p["refundable_usd"]) for p in listed["items"]] == [(purchase_id, "5.00")]
    assert BILLING  # the same API
