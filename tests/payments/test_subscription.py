"""Sizzle Lab, the monthly plan: subscribing through Stripe Checkout, the month's included
minutes granted once per paid invoice, spent after free minutes and before credit, expired at
the month's end (exactly, even across a metering gap), cancel at period end, failed renewals."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import LabSubscription, LedgerAccount, LedgerEntry
from tests.helpers import assert_error, launch_active_session, log_in, make_user, run_for
from tests.payments.fake_stripe import event, signed
from tests.payments.localstripe_server import LocalShop, LocalStripe
from tests.payments.shop import BILLING, Shop
from tests.web.pages import post_form, sign_in

LAB = f"{BILLING}/subscription"


@pytest.fixture
def shop_settings() -> dict[str, object]:
    """A small Lab (5 minutes a month, on starter and pro) to count with."""
    return {"lab_included_minutes": 5}


async def send(shop: Shop, kind: str, obj: dict[str, Any]) -> str:
    body, header = signed(event(kind, obj))
    response = await shop.client.post(
        f"{BILLING}/webhook", content=body, headers={"Stripe-Signature": header}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["result"])


def epoch(clock: FakeClock, *, minutes: float = 0) -> int:
    return int((clock.now() + timedelta(minutes=minutes)).timestamp())


async def subscribed(
    shop: Shop, clock: FakeClock, auth: dict[str, str], *, month_minutes: float = 30 * 24 * 60
) -> str:
    """Subscribe and pay the first month, which starts now; the Stripe subscription id."""
    response = await shop.client.post(LAB, headers=auth)
    assert response.status_code == 201, response.text
    session_id = response.json()["url"].rsplit("/", 1)[1]
    start, end = epoch(clock), epoch(clock, minutes=month_minutes)
    session = shop.stripe.subscribe(session_id, start=start, end=end)
    assert await send(shop, "checkout.session.completed", session) == "active"
    sub_id = str(session["subscription"])
    assert await send(shop, "invoice.paid", shop.stripe.invoice(sub_id, start=start, end=end)) == (
        "granted"
    )
    return sub_id


async def sources(db: Database, session_id: str) -> dict[int, str]:
    """What paid each minute of a session: free_minutes, included_minutes or credit."""
    async with db.read() as tx:
        rows = await tx.execute(
            select(LedgerEntry.minute, LedgerAccount.kind)
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.debit_account_id)
            .where(LedgerEntry.session_id == session_id, LedgerEntry.kind == "session_minute")
        )
        return {int(minute): kind for minute, kind in rows}


async def lab_state(shop: Shop, auth: dict[str, str]) -> dict[str, Any]:
    response = await shop.client.get(LAB, headers=auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_subscribing_opens_a_monthly_checkout_and_a_paid_month_grants_minutes_once(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    auth = await log_in(shop.client, email=user.email)
    before = await lab_state(shop, auth)
    assert before["subscription"] is None
    assert before["plan"] == {
        "name": "Sizzle Lab",
        "price_usd": "19.00",
        "included_minutes": 5,
        "tiers": ["starter", "pro"],
    }

    sub_id = await subscribed(shop, clock, auth)

    (_, form, headers) = next(r for r in shop.stripe.requests if r[0] == "create")
    assert form["mode"] == "subscription"
    assert form["line_items[0][price_data][recurring][interval]"] == "month"
    assert form["line_items[0][price_data][unit_amount]"] == "1900"
    assert headers["idempotency-key"].startswith("lab-checkout:")
    now = await lab_state(shop, auth)
    assert now["subscription"]["status"] == "active"
    assert now["subscription"]["included_minutes_left"] == 5
    assert now["subscription"]["cancel_at_period_end"] is False

    # the same invoice again, and the checkout event again: nothing more
    invoice = shop.stripe.invoice(
        sub_id, start=epoch(clock), end=epoch(clock, minutes=30 * 24 * 60)
    )
    invoice["id"] = "in_again"
    assert await send(shop, "invoice.paid", invoice) == "already_granted"
    assert (await lab_state(shop, auth))["subscription"]["included_minutes_left"] == 5
    balance = (await shop.client.get(f"{BILLING}/balance", headers=auth)).json()
    assert balance["included_minutes"] == 5 and balance["balance_usd"] == "0.00"

    # a second subscription while this one runs is refused
    assert_error(await shop.client.post(LAB, headers=auth), 409, "already_subscribed")


async def test_minutes_are_spent_free_then_included_then_credit_across_the_month_end(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    """2 free minutes, 5 Lab minutes in a month ending 4.5 minutes in, then credit. Metering
    stops between 3:55 and 6:05 (a crash), yet minute 5 (started 4:00) still uses the old
    month and minutes 6 and 7 do not; the renewal at 6:30 brings 5 new minutes."""
    user = await make_user(db, now=clock.now(), free_minutes=2, credit_usd="10")
    auth = await log_in(shop.client, email=user.email)
    session_id = await launch_active_session(shop.client, shop.state, clock, auth=auth)
    started = clock.now()
    sub_id = await subscribed(shop, clock, auth, month_minutes=4.5)

    await run_for(shop.state, clock, seconds=235)  # to 3:55
    clock.advance(130)  # to 6:05, with no metering in between
    await shop.state.jobs.meter()
    assert await sources(db, session_id) == {
        1: "free_minutes",
        2: "free_minutes",
        3: "included_minutes",
        4: "included_minutes",
        5: "included_minutes",
        6: "credit",
        7: "credit",
    }
    assert (await lab_state(shop, auth))["subscription"]["included_minutes_left"] == 0

    clock.advance(25)  # 6:30: Stripe renewed the month that began at 4:30
    renewal = shop.stripe.invoice(
        sub_id,
        start=int((started + timedelta(minutes=4.5)).timestamp()),
        end=int((started + timedelta(minutes=4.5 + 30 * 24 * 60)).timestamp()),
    )
    assert await send(shop, "invoice.paid", renewal) == "granted"
    await run_for(shop.state, clock, seconds=60)  # to 7:30: minute 8 starts at 7:00
    paid_by = await sources(db, session_id)
    assert paid_by[8] == "included_minutes"
    assert (await lab_state(shop, auth))["subscription"]["included_minutes_left"] == 4

    # the ledger says the same: two unused minutes of the first month expired, at its end
    async with db.read() as tx:
        expired = list(
            await tx.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.user_id == user.id, LedgerEntry.kind == "included_minutes_expired"
                )
            )
        )
    assert [(e.amount, e.created_at) for e in expired] == [(2, started + timedelta(minutes=4.5))]
    balance = (await shop.client.get(f"{BILLING}/balance", headers=auth)).json()
    assert balance["balance_usd"] == "9.70"  # $10 less minutes 6 and 7 at $0.15


async def test_included_minutes_pay_only_for_the_labs_tiers(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now(), free_minutes=0, credit_usd="0")
    auth = await log_in(shop.client, email=user.email)
    await subscribed(shop, clock, auth)
    # beast is not in the Lab: with no credit, it cannot start
    response = await shop.client.post("/api/v1/sessions", json={"tier": "beast"}, headers=auth)
    assert_error(response, 402, "insufficient_credit")
    # starter is: included minutes pay for it, and run out like credit would
    session_id = await launch_active_session(shop.client, shop.state, clock, auth=auth)
    await run_for(shop.state, clock, seconds=6 * 60)
    assert list((await sources(db, session_id)).values()) == ["included_minutes"] * 5
    status = (await shop.client.get(f"/api/v1/sessions/{session_id}", headers=auth)).json()
    assert status["end_reason"] == "insufficient_credits"
    assert status["charged_minutes"] == 5


async def test_cancel_at_period_end_keeps_the_month_then_ends_it(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now(), free_minutes=0, credit_usd="10")
    auth = await log_in(shop.client, email=user.email)
    sub_id = await subscribed(shop, clock, auth, month_minutes=10)

    cancelled = await shop.client.delete(LAB, headers=auth)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["subscription"]["cancel_at_period_end"] is True
    (_, form, _) = next(r for r in shop.stripe.requests if r[0] == "subscription")
    assert form == {"cancel_at_period_end": "true"}
    resumed = await shop.client.post(f"{LAB}/resume", headers=auth)
    assert resumed.json()["subscription"]["cancel_at_period_end"] is False
    await shop.client.delete(LAB, headers=auth)

    # the month still pays: a starter session uses the Lab minutes
    session_id = await launch_active_session(shop.client, shop.state, clock, auth=auth)
    await run_for(shop.state, clock, seconds=60)
    assert set((await sources(db, session_id)).values()) == {"included_minutes"}

    # at the month's end Stripe deletes the subscription; no renewal, the rest expires
    clock.advance(10 * 60)
    shop.stripe.subscriptions[sub_id]["status"] = "canceled"
    assert await send(shop, "customer.subscription.deleted", shop.stripe.subscriptions[sub_id]) == (
        "canceled"
    )
    await shop.state.jobs.meter()
    after = await lab_state(shop, auth)
    assert after["subscription"]["status"] == "canceled"
    assert after["subscription"]["included_minutes_left"] == 0
    # a late invoice for a month of the ended subscription grants nothing
    late = shop.stripe.invoice(sub_id, start=epoch(clock), end=epoch(clock, minutes=60))
    assert await send(shop, "invoice.paid", late) == "subscription_ended"
    assert (await lab_state(shop, auth))["subscription"]["included_minutes_left"] == 0
    assert_error(await shop.client.delete(LAB, headers=auth), 404, "no_subscription")
    # and a new subscription may be taken
    assert (await shop.client.post(LAB, headers=auth)).status_code == 201


async def test_a_failed_renewal_is_shown_and_grants_nothing(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now(), free_minutes=0, credit_usd="1")
    auth = await log_in(shop.client, email=user.email)
    sub_id = await subscribed(shop, clock, auth, month_minutes=2)
    clock.advance(3 * 60)
    failed = shop.stripe.invoice(
        sub_id, start=epoch(clock, minutes=-1), end=epoch(clock, minutes=30 * 24 * 60), paid=False
    )
    assert await send(shop, "invoice.payment_failed", failed) == "past_due"
    await shop.state.jobs.meter()
    seen = (await lab_state(shop, auth))["subscription"]
    assert seen["status"] == "past_due"
    assert "declined" in seen["last_error"]
    assert seen["included_minutes_left"] == 0  # the paid month ended; nothing new


async def test_the_invoice_may_arrive_before_the_checkout_event(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    auth = await log_in(shop.client, email=user.email)
    response = await shop.client.post(LAB, headers=auth)
    session_id = response.json()["url"].rsplit("/", 1)[1]
    start, end = epoch(clock), epoch(clock, minutes=60)
    session = shop.stripe.subscribe(session_id, start=start, end=end)
    invoice = shop.stripe.invoice(str(session["subscription"]), start=start, end=end)
    assert await send(shop, "invoice.paid", invoice) == "granted"
    assert await send(shop, "checkout.session.completed", session) == "active"
    assert await send(shop, "invoice.paid", invoice) == "already_granted"
    assert (await lab_state(shop, auth))["subscription"]["included_minutes_left"] == 5
    # the month's payment is in the ledger once, charged to the card, not the balance
    async with db.read() as tx:
        payments = list(
            await tx.scalars(select(LedgerEntry).where(LedgerEntry.kind == "lab_payment"))
        )
    assert [(p.amount, p.user_id) for p in payments] == [(19_000_000, user.id)]
    listed = (await shop.client.get(f"{BILLING}/transactions", headers=auth)).json()["items"]
    (lab_line,) = [t for t in listed if t["kind"] == "lab_payment"]
    assert lab_line["direction"] == "card" and lab_line["amount_usd"] == "19.00"


async def test_a_forged_invoice_event_grants_nothing(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    auth = await log_in(shop.client, email=user.email)
    response = await shop.client.post(LAB, headers=auth)
    session_id = response.json()["url"].rsplit("/", 1)[1]
    session = shop.stripe.subscribe(session_id, start=epoch(clock), end=epoch(clock, minutes=60))
    invoice = shop.stripe.invoice(
        str(session["subscription"]), start=epoch(clock), end=epoch(clock, minutes=60)
    )
    body, header = signed(event("invoice.paid", invoice), secret="whsec_someone_else")
    forged = await shop.client.post(
        f"{BILLING}/webhook", content=body, headers={"Stripe-Signature": header}
    )
    assert_error(forged, 400, "bad_signature")
    assert (await lab_state(shop, auth))["subscription"] is None


async def test_without_stripe_subscribing_says_payments_are_not_set_up(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    auth = await log_in(client, email=user.email)
    assert_error(await client.post(LAB, headers=auth), 503, "payments_not_configured")
    seen = (await client.get(LAB, headers=auth)).json()
    assert seen["payments_enabled"] is False and seen["subscription"] is None


async def test_the_plan_from_the_billing_page(shop: Shop, db: Database, clock: FakeClock) -> None:
    transport = httpx.ASGITransport(app=create_app(state=shop.state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as browser:
        user = await sign_in(browser, db, clock=clock)
        page = await browser.get("/billing")
        assert "$19.00 a month" in page.text and "5 GPU minutes" in page.text
        to_stripe = await post_form(browser, "/billing/lab", {}, page="/billing")
        assert to_stripe.status_code == 303
        session_id = to_stripe.headers["location"].rsplit("/", 1)[1]
        start, end = epoch(clock), epoch(clock, minutes=60)
        session = shop.stripe.subscribe(session_id, start=start, end=end)
        await send(shop, "checkout.session.completed", session)
        await send(
            shop,
            "invoice.paid",
            shop.stripe.invoice(str(session["subscription"]), start=start, end=end),
        )
        page = await browser.get("/billing")
        assert "Your plan is <strong>active</strong>" in page.text
        assert "Sizzle Lab minutes left" in page.text
        assert "Sizzle Lab, paid by card" in page.text and "$19.00 by card" in page.text
        cancelled = await post_form(browser, "/billing/lab/cancel", {}, page="/billing")
        assert cancelled.status_code == 303
        page = await browser.get("/billing")
        assert "It ends then: nothing more will be charged." in page.text
        # a second subscription while this one runs is explained on the page
        again = await post_form(browser, "/billing/lab", {}, page="/billing")
        assert again.status_code == 409 and "already have Sizzle Lab" in again.text
        auth = await log_in(shop.client, email=user.email)
        assert (await lab_state(shop, auth))["subscription"]["cancel_at_period_end"] is True


async def test_the_plan_against_localstripe(
    stripe_shop: LocalShop, db: Database, clock: FakeClock
) -> None:
    """Sizzle reads the subscription from localstripe (older API shapes: the period on the
    subscription, the invoice's top-level `subscription`) and cancels it there. localstripe has
    no Checkout, so the test subscribes as Checkout would, in localstripe, then signs the
    events."""
    shop = stripe_shop
    local = LocalStripe(shop.url)
    user = await make_user(db, now=clock.now())
    auth = await log_in(shop.client, email=user.email)
    lab_id = uuid.uuid4().hex
    async with db.transaction() as tx:  # what start_checkout opens before it asks Stripe
        tx.add(
            LabSubscription(
                id=lab_id,
                user_id=user.id,
                status="open",
                price_micros=19_000_000,
                included_minutes=5,
                checkout_session_id=f"cs_test_{lab_id}",
                cancel_at_period_end=False,
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
    customer, method = await local.card("4242424242424242", email=user.email)
    await local.post(
        f"/v1/customers/{customer}", invoice_settings={"default_payment_method": method}
    )
    product = await local.post("/v1/products", name="Sizzle Lab", type="service")
    plan = await local.post(
        "/v1/plans", product=product["id"], amount=1900, currency="usd", interval="month"
    )
    sub = await local.post(
        "/v1/subscriptions",
        customer=customer,
        **{"items[0][plan]": plan["id"]},
        metadata={"lab_subscription_id": lab_id, "user_id": user.id},
    )
    assert sub["status"] == "active"
    session = {
        "id": f"cs_test_{lab_id}",
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "client_reference_id": lab_id,
        "customer": customer,
        "subscription": sub["id"],
    }
    assert await send(shop, "checkout.session.completed", session) == "active"
    (invoice,) = (await local.get(f"/v1/invoices?subscription={sub['id']}"))["data"]
    assert await send(shop, "invoice.paid", invoice) == "granted"
    seen = await lab_state(shop, auth)
    assert seen["subscription"]["status"] == "active"
    assert seen["subscription"]["included_minutes_left"] == 5
    assert seen["subscription"]["current_period_end"] is not None

    cancelled = await shop.client.delete(LAB, headers=auth)
    assert cancelled.status_code == 200, cancelled.text
    assert (await local.get(f"/v1/subscriptions/{sub['id']}"))["cancel_at_period_end"] is True
    assert cancelled.json()["subscription"]["cancel_at_period_end"] is True
