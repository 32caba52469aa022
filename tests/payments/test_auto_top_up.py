"""Auto-top-up: the card saved at a Checkout purchase is charged off-session when metering
leaves the credit below the threshold, once per crossing; failures are shown and, repeated,
switch it off."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import AutoTopUp, Purchase
from tests.helpers import assert_error, launch_active_session, log_in, make_user, run_for
from tests.payments.shop import BILLING, Shop, balance, buy, deliver
from tests.web.pages import post_form, sign_in

TOP_UP = f"{BILLING}/auto-top-up"


async def customer_with_card(shop: Shop, db: Database, clock: FakeClock) -> dict[str, str]:
    """A user who bought $5 by card (so Stripe keeps the card), with no free minutes."""
    user = await make_user(db, now=clock.now(), free_minutes=0)
    auth = await log_in(shop.client, email=user.email)
    session = shop.stripe.pay(str((await buy(shop, auth, "5"))["id"]))
    assert (await deliver(shop, "checkout.session.completed", session)).json()[
        "result"
    ] == "credited"
    return auth


def intents(shop: Shop) -> list[dict[str, str]]:
    return [form for kind, form, _headers in shop.stripe.requests if kind == "payment_intent"]


async def turn_on(
    shop: Shop, auth: dict[str, str], threshold: str = "4", package: str = "20"
) -> None:
    response = await shop.client.put(
        TOP_UP, json={"enabled": True, "threshold_usd": threshold, "package": package}, headers=auth
    )
    assert response.status_code == 200, response.text
    assert response.json()["enabled"] is True


async def test_checkout_keeps_the_card_and_asks_for_it_to_be_kept(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    auth = await customer_with_card(shop, db, clock)
    (_, form, _) = next(r for r in shop.stripe.requests if r[0] == "create")
    assert form["payment_intent_data[setup_future_usage]"] == "off_session"
    seen = (await shop.client.get(TOP_UP, headers=auth)).json()
    assert seen["card"] is not None and seen["enabled"] is False


async def test_turning_it_on_needs_a_saved_card(shop: Shop, db: Database, clock: FakeClock) -> None:
    auth = await log_in(shop.client, email=(await make_user(db, now=clock.now())).email)
    response = await shop.client.put(
        TOP_UP, json={"enabled": True, "threshold_usd": "5", "package": "20"}, headers=auth
    )
    assert_error(response, 409, "no_saved_card")
    for body in (
        {"enabled": False, "threshold_usd": "0", "package": "20"},
        {"enabled": False, "threshold_usd": "lots", "package": "20"},
        {"enabled": False, "threshold_usd": "5000", "package": "20"},
    ):
        assert_error(await shop.client.put(TOP_UP, json=body, headers=auth), 422)
    unknown = {"enabled": False, "threshold_usd": "5", "package": "7"}
    assert_error(await shop.client.put(TOP_UP, json=unknown, headers=auth), 404, "unknown_package")


async def test_one_charge_per_crossing_of_the_threshold(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    auth = await customer_with_card(shop, db, clock)
    await turn_on(shop, auth, threshold="4", package="20")
    await launch_active_session(shop.client, shop.state, clock, auth=auth)
    await run_for(shop.state, clock, seconds=420)  # 7 minutes: $5.00 -> $3.95, below $4
    assert len(intents(shop)) == 1
    (form,) = intents(shop)
    assert (form["amount"], form["off_session"], form["confirm"]) == ("2000", "true", "true")
    assert form["customer"] == "cus_test_1" and form["payment_method"] == "pm_test_visa"
    assert await balance(shop.client, auth) == "25.95"  # $22 of credit landed ($20 + 10%)
    await run_for(shop.state, clock, seconds=300)  # well above the threshold: nothing more
    assert len(intents(shop)) == 1
    async with db.read() as tx:
        tops = list(await tx.scalars(select(Purchase).where(Purchase.source == "auto_top_up")))
    assert [(p.status, p.paid_micros) for p in tops] == [("paid", 20_000_000)]


async def test_a_declined_card_is_shown_not_retried_and_three_switch_it_off(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    auth = await customer_with_card(shop, db, clock)
    shop.stripe.intent_outcome = "declined"
    await turn_on(shop, auth, threshold="4", package="5")
    await launch_active_session(shop.client, shop.state, clock, auth=auth)
    await run_for(shop.state, clock, seconds=420)
    await run_for(shop.state, clock, seconds=60)  # still below: no second try in this crossing
    assert len(intents(shop)) == 1
    state = (await shop.client.get(TOP_UP, headers=auth)).json()
    assert state["failures"] == 1 and "insufficient funds" in state["last_error"]
    await turn_on(shop, auth, threshold="4", package="5")  # the user tries again
    assert (await shop.client.get(TOP_UP, headers=auth)).json()["failures"] == 0
    await shop.state.jobs.meter()  # turning it on re-arms it: one more attempt, at once
    assert len(intents(shop)) == 2
    state = (await shop.client.get(TOP_UP, headers=auth)).json()
    assert state["enabled"] is True and state["failures"] == 1


async def test_repeated_failures_switch_it_off(shop: Shop, db: Database, clock: FakeClock) -> None:
    auth = await customer_with_card(shop, db, clock)
    await turn_on(shop, auth, threshold="100", package="5")  # always below: every re-arm charges
    shop.stripe.intent_outcome = "declined"
    for _ in range(3):
        async with db.transaction() as tx:  # as if the balance went above and fell again
            (row,) = list(await tx.scalars(select(AutoTopUp)))
            row.armed = True
        await shop.state.jobs.meter()
    state = (await shop.client.get(TOP_UP, headers=auth)).json()
    assert state["enabled"] is False and state["failures"] == 3
    assert "switched off after 3 failed charges" in state["last_error"]
    async with db.transaction() as tx:
        (row,) = list(await tx.scalars(select(AutoTopUp)))
        row.armed = True
    await shop.state.jobs.meter()
    assert len(intents(shop)) == 3  # off means off


async def test_a_charge_still_processing_is_credited_by_the_webhook_once(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    auth = await customer_with_card(shop, db, clock)
    shop.stripe.intent_outcome = "processing"
    await turn_on(shop, auth, threshold="100", package="20")
    await shop.state.jobs.meter()
    assert await balance(shop.client, auth) == "5.00"
    (intent,) = [i for i in shop.stripe.payment_intents.values() if i["status"] == "processing"]
    done = {**intent, "status": "succeeded"}
    for _ in range(2):
        response = await deliver(shop, "payment_intent.succeeded", done)
    assert response.json() == {"result": "already_credited"}
    assert await balance(shop.client, auth) == "27.00"


async def test_auto_top_up_from_the_billing_page(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    transport = httpx.ASGITransport(app=create_app(state=shop.state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as browser:
        user = await sign_in(browser, db, clock=clock, free_minutes=0)
        page = await browser.get("/billing")
        assert "Buy a package by card once" in page.text
        auth = await log_in(shop.client, email=user.email)
        session = shop.stripe.pay(str((await buy(shop, auth, "5"))["id"]))
        await deliver(shop, "checkout.session.completed", session)
        saved = await post_form(
            browser,
            "/billing/auto-top-up",
            {"enabled": "on", "threshold": "3", "package": "20"},
            page="/billing",
        )
        assert saved.status_code == 303
        assert (await shop.client.get(TOP_UP, headers=auth)).json()["enabled"] is True
        bad = await post_form(
            browser, "/billing/auto-top-up", {"threshold": "lots", "package": "20"}, page="/billing"
        )
        assert bad.status_code == 422 and "threshold is dollars" in bad.text
