"""Monthly statements (JSON, CSV, PDF) and receipts: figures that add up to the ledger."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import httpx

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.services.statements import SessionUse
from tests.helpers import assert_error, launch_active_session, log_in, make_user, run_for
from tests.payments.shop import BILLING, Shop, balance, buy, deliver
from tests.web.pages import sign_in

ADMIN = "/api/v1/admin"


async def test_a_months_statement_adds_up_to_the_ledger(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now(), free_minutes=2)
    auth = await log_in(shop.client, email=user.email)
    session = shop.stripe.pay(str((await buy(shop, auth, "20"))["id"]))
    await deliver(shop, "checkout.session.completed", session)
    session_id = await launch_active_session(shop.client, shop.state, clock, auth=auth)
    await run_for(shop.state, clock, seconds=270)  # 5 started minutes: 2 free, 3 paid
    await shop.client.post(f"/api/v1/sessions/{session_id}/stop", headers=auth)
    admin = await log_in(
        shop.client, email=(await make_user(db, now=clock.now(), is_admin=True)).email
    )
    refund = await shop.client.post(
        f"{ADMIN}/purchases/{session['client_reference_id']}/refund",
        json={"amount_usd": "5"},
        headers=admin,
    )
    assert refund.status_code == 201, refund.text

    march = (await shop.client.get(f"{BILLING}/statements/2026-03", headers=auth)).json()
    assert march["opening_balance_usd"] == "0.00"
    assert [(line["what"], line["amount_usd"]) for line in march["lines"]] == [
        ("Credit bought", "20.00"),
        ("Package bonus", "2.00"),
        ("Refund to card", "-5.00"),
        ("Package bonus taken back", "-0.50"),
    ]
    (use,) = march["sessions"]
    assert (use["session_id"], use["minutes"], use["free_minutes"], use["cost_usd"]) == (
        session_id,
        3,
        2,
        "0.45",
    )
    assert use["charges_text"] == "2 free minutes used · $0.45 charged for 3 minutes"
    assert march["closing_balance_usd"] == "16.05" == await balance(shop.client, auth)

    april = (await shop.client.get(f"{BILLING}/statements/2026-04", headers=auth)).json()
    assert (april["opening_balance_usd"], april["closing_balance_usd"], april["lines"]) == (
        "16.05",
        "16.05",
        [],
    )

    as_csv = await shop.client.get(f"{BILLING}/statements/2026-03?format=csv", headers=auth)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert rows[0]["what"] == "Opening balance" and rows[-1]["what"] == "Closing balance"
    assert "GPU time, starter: 2 free minutes used · $0.45 charged for 3 minutes" in [
        row["what"] for row in rows
    ]
    moved = sum(Decimal(row["amount_usd"]) for row in rows[1:-1])
    assert Decimal(rows[0]["amount_usd"]) + moved == Decimal(rows[-1]["amount_usd"])

    as_pdf = await shop.client.get(f"{BILLING}/statements/2026-03?format=pdf", headers=auth)
    assert as_pdf.headers["content-type"] == "application/pdf"
    assert as_pdf.content.startswith(b"%PDF-")


async def test_bad_months_are_refused(shop: Shop, db: Database, clock: FakeClock) -> None:
    auth = await log_in(shop.client, email=(await make_user(db, now=clock.now())).email)
    for month in ("2026-13", "2026-00", "26-03", "march", "9999-12"):  # December 9999 has no end
        response = await shop.client.get(f"{BILLING}/statements/{month}", headers=auth)
        assert_error(response, 422)
    other = await shop.client.get(f"{BILLING}/statements/2026-03?format=xml", headers=auth)
    assert_error(other, 422)


async def test_a_receipt_for_a_paid_purchase_of_mine_only(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    auth = await log_in(shop.client, email=(await make_user(db, now=clock.now())).email)
    open_session = await buy(shop, auth, "5")
    purchase_id = open_session["client_reference_id"]
    unpaid = await shop.client.get(f"{BILLING}/purchases/{purchase_id}/receipt", headers=auth)
    assert_error(unpaid, 404, "not_paid")
    await deliver(shop, "checkout.session.completed", shop.stripe.pay(str(open_session["id"])))
    receipt = await shop.client.get(f"{BILLING}/purchases/{purchase_id}/receipt", headers=auth)
    assert receipt.status_code == 200
    assert receipt.headers["content-type"] == "application/pdf"
    assert receipt.content.startswith(b"%PDF-")
    stranger = await log_in(shop.client, email=(await make_user(db, now=clock.now())).email)
    theirs = await shop.client.get(f"{BILLING}/purchases/{purchase_id}/receipt", headers=stranger)
    assert_error(theirs, 404)


async def test_the_billing_page_links_statements_and_receipts(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    transport = httpx.ASGITransport(app=create_app(state=shop.state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as browser:
        user = await sign_in(browser, db, clock=clock)
        auth = await log_in(shop.client, email=user.email)
        session = shop.stripe.pay(str((await buy(shop, auth, "5"))["id"]))
        await deliver(shop, "checkout.session.completed", session)
        page = await browser.get("/billing")
        assert 'href="/billing/statements/2026-03.pdf"' in page.text
        receipt_link = f'href="/billing/receipts/{session["client_reference_id"]}.pdf"'
        assert receipt_link in page.text
        pdf = await browser.get(f"/billing/receipts/{session['client_reference_id']}.pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
        as_csv = await browser.get("/billing/statements/2026-03.csv")
        assert "Credit bought" in as_csv.text and "5.00" in as_csv.text
        assert (await browser.get("/billing/statements/2026-3.csv")).status_code == 422


def test_a_statement_tells_each_sessions_minutes_as_the_pages_do() -> None:
    lab = SessionUse("s1", "starter", None, minutes=1, cost_micros=150_000, included_minutes=2)
    assert lab.text == "2 Sizzle Lab minutes used · $0.15 charged for 1 minute"
    # charged in March, given back in April: April's statement says so, in words
    back = SessionUse("s2", "starter", None, minutes=-1, cost_micros=-150_000)
    assert back.text == "1 minute given back · $0.15 back to your credit"
