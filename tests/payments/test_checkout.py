"""Buying credit: packages, Stripe Checkout (a fake Stripe on loopback, through the real
`stripe` client), and the signed webhook that credits each purchase exactly once."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import Purchase
from tests.helpers import assert_error, sign_up
from tests.payments.fake_stripe import event, signed
from tests.payments.shop import BILLING, Shop, balance, buy, deliver, purchase_entries
from tests.web.pages import post_form, sign_in


async def test_packages_are_listed_with_their_bonus(client: httpx.AsyncClient) -> None:
    body = (await client.get(f"{BILLING}/packages")).json()
    assert body["payments_enabled"] is False  # no Stripe key in the default settings
    assert [
        (p["id"], p["price_usd"], p["bonus_percent"], p["credit_usd"]) for p in body["items"]
    ] == [
        ("5", "5.00", 0, "5.00"),
        ("20", "20.00", 10, "22.00"),
        ("50", "50.00", 20, "60.00"),
        ("100", "100.00", 30, "130.00"),
    ]


async def test_without_stripe_buying_says_payments_are_not_set_up(
    client: httpx.AsyncClient,
) -> None:
    auth = await sign_up(client)
    response = await client.post(f"{BILLING}/checkout", json={"package": "20"}, headers=auth)
    assert "not set up" in assert_error(response, 503, "payments_not_configured")["message"]


async def test_checkout_opens_a_stripe_page_for_the_package(shop: Shop) -> None:
    auth = await sign_up(shop.client)
    session = await buy(shop, auth, "50")
    (_, form, headers) = shop.stripe.requests[-1]
    assert form["mode"] == "payment"
    assert form["line_items[0][price_data][unit_amount]"] == "5000"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["success_url"].startswith("https://sizzle.example/billing/return?purchase=")
    assert headers["idempotency-key"].startswith("checkout:")
    assert session["amount_total"] == 5000
    unknown = await shop.client.post(f"{BILLING}/checkout", json={"package": "7"}, headers=auth)
    assert_error(unknown, 404, "unknown_package")


async def test_a_paid_checkout_is_credited_once_however_often_stripe_says_so(
    shop: Shop, db: Database
) -> None:
    auth = await sign_up(shop.client)
    session = shop.stripe.pay(str((await buy(shop, auth, "20"))["id"]))
    first = await deliver(shop, "checkout.session.completed", session)
    assert first.status_code == 200 and first.json() == {"result": "credited"}
    assert await balance(shop.client, auth) == "22.00"  # $20 and its 10% bonus
    for kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        again = await deliver(shop, kind, session)
        assert again.json() == {"result": "already_credited"}
    late_failure = await deliver(shop, "checkout.session.async_payment_failed", session)
    assert late_failure.json() == {"result": "already_paid"}
    assert await balance(shop.client, auth) == "22.00"
    assert await purchase_entries(db) == 2  # the payment and the bonus, once each


async def test_a_delayed_payment_is_credited_when_it_succeeds(shop: Shop) -> None:
    auth = await sign_up(shop.client)
    session = await buy(shop, auth, "5")
    waiting = await deliver(shop, "checkout.session.completed", session)  # still unpaid
    assert waiting.json() == {"result": "awaiting_payment"}
    assert await balance(shop.client, auth) == "0.00"
    paid = await deliver(
        shop, "checkout.session.async_payment_succeeded", shop.stripe.pay(str(session["id"]))
    )
    assert paid.json() == {"result": "credited"}
    assert await balance(shop.client, auth) == "5.00"


async def test_a_failed_delayed_payment_credits_nothing(shop: Shop) -> None:
    auth = await sign_up(shop.client)
    session = await buy(shop, auth, "5")
    failed = await deliver(shop, "checkout.session.async_payment_failed", session)
    assert failed.json() == {"result": "failed"}
    purchase = (
        await shop.client.get(f"{BILLING}/purchases/{session['client_reference_id']}", headers=auth)
    ).json()
    assert purchase["status"] == "failed"
    assert await balance(shop.client, auth) == "0.00"


async def test_forged_stale_or_missing_signatures_are_refused_and_change_nothing(
    shop: Shop, db: Database
) -> None:
    auth = await sign_up(shop.client)
    session = shop.stripe.pay(str((await buy(shop, auth, "100"))["id"]))
    forged = await deliver(shop, "checkout.session.completed", session, secret="whsec_not_ours")
    assert_error(forged, 400, "bad_signature")
    stale = await deliver(
        shop, "checkout.session.completed", session, at=int(__import__("time").time()) - 400
    )
    assert_error(stale, 400, "bad_signature")
    body, _ = signed(event("checkout.session.completed", session))
    missing = await shop.client.post(f"{BILLING}/webhook", content=body)
    assert_error(missing, 400, "bad_signature")
    tampered_body, header = signed(event("checkout.session.completed", session))
    tampered = await shop.client.post(
        f"{BILLING}/webhook",
        content=tampered_body.replace(b'"amount_total": 10000', b'"amount_total": 99999'),
        headers={"Stripe-Signature": header},
    )
    assert_error(tampered, 400, "bad_signature")
    assert await balance(shop.client, auth) == "0.00"
    assert await purchase_entries(db) == 0


async def test_a_paid_amount_that_does_not_match_the_package_is_not_credited(shop: Shop) -> None:
    auth = await sign_up(shop.client)
    session = shop.stripe.pay(str((await buy(shop, auth, "20"))["id"]))
    response = await deliver(shop, "checkout.session.completed", {**session, "amount_total": 500})
    assert response.json() == {"result": "amount_mismatch"}
    assert await balance(shop.client, auth) == "0.00"


async def test_the_return_page_can_be_first_and_the_webhook_adds_nothing(
    shop: Shop, db: Database
) -> None:
    auth = await sign_up(shop.client)
    session = await buy(shop, auth, "20")
    purchase_url = f"{BILLING}/purchases/{session['client_reference_id']}"
    assert (await shop.client.get(purchase_url, headers=auth)).json()["status"] == "open"
    shop.stripe.pay(str(session["id"]))
    seen = (await shop.client.get(purchase_url, headers=auth)).json()
    assert (seen["status"], seen["credit_usd"]) == ("paid", "22.00")
    late = await deliver(
        shop, "checkout.session.completed", shop.stripe.sessions[str(session["id"])]
    )
    assert late.json() == {"result": "already_credited"}
    assert await balance(shop.client, auth) == "22.00"
    assert await purchase_entries(db) == 2


async def test_another_users_purchase_is_not_found(shop: Shop) -> None:
    owner = await sign_up(shop.client)
    session = await buy(shop, owner, "5")
    stranger = await sign_up(shop.client)
    response = await shop.client.get(
        f"{BILLING}/purchases/{session['client_reference_id']}", headers=stranger
    )
    assert_error(response, 404)


async def test_a_passing_stripe_error_is_retried_with_the_same_idempotency_key(
    shop: Shop,
) -> None:
    auth = await sign_up(shop.client)
    shop.stripe.fail_creates = 1
    response = await shop.client.post(f"{BILLING}/checkout", json={"package": "5"}, headers=auth)
    assert response.status_code == 201, response.text
    keys = [headers["idempotency-key"] for _, _, headers in shop.stripe.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert len(shop.stripe.sessions) == 1


async def test_when_stripe_cannot_open_a_page_the_purchase_fails_and_nothing_is_charged(
    shop: Shop, db: Database
) -> None:
    auth = await sign_up(shop.client)
    shop.stripe.fail_creates = 10
    response = await shop.client.post(f"{BILLING}/checkout", json={"package": "5"}, headers=auth)
    assert "nothing was charged" in assert_error(response, 503, "payments_unavailable")["message"]
    async with db.read() as tx:
        statuses = list(await tx.scalars(select(Purchase.status)))
    assert statuses == ["failed"]
    assert await balance(shop.client, auth) == "0.00"


async def test_buying_from_the_billing_page(shop: Shop, db: Database, clock: FakeClock) -> None:
    transport = httpx.ASGITransport(app=create_app(state=shop.state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as browser:
        await sign_in(browser, db, clock=clock, free_minutes=0)
        page = await browser.get("/billing")
        assert "Buy $20.00" in page.text and "$22.00 of credit" in page.text
        to_stripe = await post_form(
            browser, "/billing/checkout", {"package": "20"}, page="/billing"
        )
        assert to_stripe.status_code == 303
        (session,) = shop.stripe.sessions.values()
        assert to_stripe.headers["location"] == session["url"]
        back = str(session["success_url"]).removeprefix("https://sizzle.example")
        waiting = await browser.get(back)
        assert "Waiting for the payment" in waiting.text
        shop.stripe.pay(str(session["id"]))
        thanks = await browser.get(back)
        assert "$22.00 of credit was added" in thanks.text
        billing = await browser.get("/billing")
        assert "Credit bought" in billing.text and "Package bonus" in billing.text


async def test_the_billing_page_says_when_payments_are_not_set_up(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    page = await browser.get("/billing")
    assert "not set up on this Sizzle yet" in page.text
    assert "/billing/checkout" not in page.text
    refused = await post_form(browser, "/billing/checkout", {"package": "20"}, page="/billing")
    assert refused.status_code == 503
