"""The purchases page for operators: every purchase with what it can refund now and its
refunds, and a refund form that goes through the same refunds as the API (Stripe refusing,
amounts over the cap and forms without the CSRF token change nothing)."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import Refund, User
from tests.helpers import log_in, make_user
from tests.payments.shop import Shop, balance, buy, deliver
from tests.web.pages import csrf_of, post_form, sign_in

PAGE = "/admin/purchases"


@pytest.fixture
async def pages(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client on the app wired to the fake Stripe."""
    transport = httpx.ASGITransport(app=create_app(state=shop.state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as client:
        yield client


@pytest.fixture
async def buyer(shop: Shop, db: Database, clock: FakeClock) -> tuple[User, dict[str, str]]:
    user = await make_user(db, now=clock.now(), free_minutes=0)
    return user, await log_in(shop.client, email=user.email)


async def paid_purchase(shop: Shop, auth: dict[str, str], package: str = "20") -> str:
    session = shop.stripe.pay(str((await buy(shop, auth, package))["id"]))
    assert (await deliver(shop, "checkout.session.completed", session)).json()[
        "result"
    ] == "credited"
    return str(session["client_reference_id"])


def row_with(page: httpx.Response, text: str) -> str:
    """The table row of the page that contains `text`."""
    rows = [row for row in re.findall(r"<tr>.*?</tr>", page.text, re.S) if text in row]
    assert len(rows) == 1, f"{len(rows)} rows contain {text!r}"
    return rows[0]


def notice(page: httpx.Response, kind: str) -> str:
    found = re.search(rf'<div class="notice {kind}"[^>]*>(.*?)</div>', page.text, re.S)
    assert found, f"no {kind} notice on the page"
    return html.unescape(found.group(1))


async def refund_count(db: Database) -> int:
    async with db.read() as tx:
        return (await tx.scalar(select(func.count()).select_from(Refund))) or 0


# --- who may use it ---------------------------------------------------------------------------


async def test_a_user_who_is_not_an_operator_gets_403(
    shop: Shop,
    pages: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    buyer: tuple[User, dict[str, str]],
) -> None:
    _, auth = buyer
    purchase_id = await paid_purchase(shop, auth)
    await sign_in(pages, db, clock=clock)
    page = await pages.get(PAGE)
    assert page.status_code == 403
    assert "operators" in page.text
    token = csrf_of(await pages.get("/"))
    response = await pages.post(
        f"{PAGE}/{purchase_id}/refund", data={"csrf_token": token, "amount": "5"}
    )
    assert response.status_code == 403
    assert await balance(shop.client, auth) == "22.00"
    assert await refund_count(db) == 0


async def test_signed_out_people_are_sent_to_sign_in(pages: httpx.AsyncClient) -> None:
    page = await pages.get(PAGE)
    assert page.status_code == 303
    assert page.headers["location"] == f"/signin?next={PAGE}"


async def test_a_refund_without_the_csrf_token_is_refused(
    shop: Shop,
    pages: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    buyer: tuple[User, dict[str, str]],
) -> None:
    _, auth = buyer
    purchase_id = await paid_purchase(shop, auth)
    await sign_in(pages, db, clock=clock, is_admin=True)
    await pages.get(PAGE)  # the page's cookie, but not its token
    response = await pages.post(f"{PAGE}/{purchase_id}/refund", data={"amount": "5"})
    assert response.status_code == 403
    assert await balance(shop.client, auth) == "22.00"
    assert await refund_count(db) == 0


# --- the list ---------------------------------------------------------------------------------


async def test_the_page_lists_a_paid_purchase_with_what_it_can_refund(
    shop: Shop,
    pages: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    buyer: tuple[User, dict[str, str]],
) -> None:
    user, auth = buyer
    purchase_id = await paid_purchase(shop, auth, "20")
    await buy(shop, auth, "5")  # started, never paid: nothing to refund, no form
    await sign_in(pages, db, clock=clock, is_admin=True)
    page = await pages.get(PAGE)
    assert page.status_code == 200
    assert '<a href="/admin/purchases" aria-current="page">Purchases</a>' in page.text
    assert "2 purchases" in page.text
    paid = row_with(page, f"/admin/purchases/{purchase_id}/refund")
    for cell in (user.email, "$20.00", "$22.00", "Paid", 'class="num">$20.00</td>'):
        assert cell in paid, cell
    confirm = re.search(r'data-confirm="([^"]*)"', paid)
    assert confirm
    assert html.unescape(confirm.group(1)).startswith(f"Refund $20.00 to the card of {user.email}?")
    assert 'for="amount-' in paid and 'for="reason-' in paid
    assert len(re.findall(r"/refund\"", page.text)) == 1  # the open purchase has no form
    assert "<th>" not in page.text  # every header cell has a scope
    assert 'class="table-wrap"' in page.text

    mine = await pages.get(PAGE, params={"user": user.id})
    assert f"2 purchases of {user.email}" in mine.text
    assert purchase_id in mine.text
    other = await pages.get(PAGE, params={"user": "0123456789abcdef"})
    assert purchase_id not in other.text and "No purchases" in other.text
    assert (await pages.get(PAGE, params={"offset": -1})).status_code == 422


async def test_the_operator_nav_links_to_the_purchases(
    pages: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(pages, db, clock=clock, is_admin=True)
    assert 'href="/admin/purchases"' in (await pages.get("/admin")).text


# --- refunds ----------------------------------------------------------------------------------


async def test_a_partial_refund_through_the_form(
    shop: Shop,
    pages: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    buyer: tuple[User, dict[str, str]],
) -> None:
    user, auth = buyer
    purchase_id = await paid_purchase(shop, auth, "20")  # $20 paid, $22 of credit
    operator = await sign_in(pages, db, clock=clock, is_admin=True)
    response = await post_form(
        pages,
        f"{PAGE}/{purchase_id}/refund",
        {"amount": "$5", "reason": "asked nicely"},
        page=PAGE,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith(f"{PAGE}?done=refunded&")
    assert await balance(shop.client, auth) == "16.50"  # $5 and its $0.50 of bonus
    (_, form, _headers) = shop.stripe.requests[-1]
    assert form["amount"] == "500" and form["payment_intent"] in shop.stripe.payment_intents
    async with db.read() as tx:
        (refund,) = await tx.scalars(select(Refund))
    assert (refund.amount_micros, refund.bonus_micros, refund.status) == (
        5_000_000,
        500_000,
        "succeeded",
    )
    assert refund.requested_by == f"operator:{operator.id}"
    assert refund.reason == "asked nicely"

    after = await pages.get(response.headers["location"])
    assert f"Refunded $5.00 to the card of {user.email}" in notice(after, "ok")
    row = row_with(after, f"/admin/purchases/{purchase_id}/refund")
    assert "$5.00" in row and "$0.50" in row and "Refunded" in row and "asked nicely" in row
    assert 'class="num">$15.00</td>' in row  # left: $15 paid, $16.50 on the balance

    rest = await post_form(pages, f"{PAGE}/{purchase_id}/refund", {"amount": ""}, page=PAGE)
    assert rest.status_code == 303
    assert await balance(shop.client, auth) == "0.00"
    done = await pages.get(rest.headers["location"])
    assert "Refunded $15.00" in notice(done, "ok")
    assert "Nothing left to refund" in row_with(done, user.email)
    assert f"/admin/purchases/{purchase_id}/refund" not in done.text


async def test_a_filtered_page_stays_filtered_after_a_refund(
    shop: Shop,
    pages: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    buyer: tuple[User, dict[str, str]],
) -> None:
    user, auth = buyer
    purchase_id = await paid_purchase(shop, auth, "5")
    await sign_in(pages, db, clock=clock, is_admin=True)
    response = await post_form(
        pages,
        f"{PAGE}/{purchase_id}/refund",
        {"amount": "1", "user": user.id},
        page=f"{PAGE}?user={user.id}",
    )
    assert response.status_code == 303
    assert f"user={user.id}" in response.headers["location"]
    assert await balance(shop.client, auth) == "4.00"


@pytest.mark.parametrize("amount", ["20.01", "25", "0", "-1", "1.001", "lots", "NaN", "Infinity"])
async def test_a_bad_or_too_big_refund_is_a_422_on_the_page_and_changes_nothing(
    shop: Shop,
    pages: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    buyer: tuple[User, dict[str, str]],
    amount: str,
) -> None:
    user, auth = buyer
    purchase_id = await paid_purchase(shop, auth, "20")
    await sign_in(pages, db, clock=clock, is_admin=True)
    calls = len(shop.stripe.requests)
    response = await post_form(pages, f"{PAGE}/{purchase_id}/refund", {"amount": amount}, page=PAGE)
    assert response.status_code == 422, response.text
    assert notice(response, "error")
    if amount in ("20.01", "25"):
        assert "$20.00" in notice(response, "error")  # what can be refunded
    assert user.email in response.text  # the list is still there to try again
    assert await balance(shop.client, auth) == "22.00"
    assert await refund_count(db) == 0
    assert len(shop.stripe.requests) == calls  # Stripe was not asked


async def test_a_refund_stripe_refuses_is_shown_and_leaves_the_credit(
    shop: Shop,
    pages: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    buyer: tuple[User, dict[str, str]],
) -> None:
    user, auth = buyer
    purchase_id = await paid_purchase(shop, auth, "20")
    await sign_in(pages, db, clock=clock, is_admin=True)
    shop.stripe.refuse_refunds = True
    response = await post_form(pages, f"{PAGE}/{purchase_id}/refund", {}, page=PAGE)
    assert response.status_code == 503
    assert "Stripe refused the refund" in notice(response, "error")
    assert await balance(shop.client, auth) == "22.00"
    row = row_with(response, user.email)
    assert "Failed, credit put back" in row
    assert 'class="num">$20.00</td>' in row  # the failed refund does not count


async def test_a_refund_of_an_unknown_or_unpaid_purchase_is_shown_not_a_500(
    shop: Shop,
    pages: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    buyer: tuple[User, dict[str, str]],
) -> None:
    _, auth = buyer
    open_one = str((await buy(shop, auth, "5"))["client_reference_id"])
    await sign_in(pages, db, clock=clock, is_admin=True)
    unknown = await post_form(pages, f"{PAGE}/0123456789abcdef/refund", {}, page=PAGE)
    assert unknown.status_code == 404
    assert "not found" in notice(unknown, "error")
    odd = await post_form(pages, f"{PAGE}/not%20an%20id/refund", {}, page=PAGE)
    assert odd.status_code == 404
    unpaid = await post_form(pages, f"{PAGE}/{open_one}/refund", {}, page=PAGE)
    assert unpaid.status_code == 409
    assert "only a paid purchase" in notice(unpaid, "error")
    assert await refund_count(db) == 0
