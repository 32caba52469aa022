"""The user is told when their card is charged: an auto-top-up charged or failed (and when
failures switch it off), a Sizzle Lab month paid or its payment failed. Once per purchase or
invoice, whatever number of times Stripe's events arrive."""

from __future__ import annotations

from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import AutoTopUp, Notification
from tests.helpers import launch_active_session, log_in, make_user, run_for
from tests.payments.shop import Shop
from tests.payments.test_auto_top_up import customer_with_card, turn_on
from tests.payments.test_subscription import epoch, send, subscribed


async def told(db: Database) -> list[Notification]:
    async with db.read() as tx:
        return list(
            await tx.scalars(
                select(Notification).order_by(Notification.created_at, Notification.key)
            )
        )


async def test_an_auto_top_up_charge_is_told_once(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    auth = await customer_with_card(shop, db, clock)
    await turn_on(shop, auth, threshold="4", package="20")
    await launch_active_session(shop.client, shop.state, clock, auth=auth)
    await run_for(shop.state, clock, seconds=420)
    (charged,) = [n for n in await told(db) if n.kind == "top_up_charged"]
    assert charged.title == "Auto top-up: $22.00 credit added"
    assert "charged $20.00 because your credit fell below $4.00" in charged.body
    assert charged.mail_status == "pending" and charged.link == "/billing#auto-top-up"


async def test_failed_top_ups_are_told_each_and_say_when_it_switched_off(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    auth = await customer_with_card(shop, db, clock)
    await turn_on(shop, auth, threshold="100", package="5")
    shop.stripe.intent_outcome = "declined"
    for _ in range(3):
        async with db.transaction() as tx:  # as if the balance went above and fell again
            (row,) = list(await tx.scalars(select(AutoTopUp)))
            row.armed = True
        await shop.state.jobs.meter()
        clock.advance(60)
    failed = [n for n in await told(db) if n.kind == "top_up_failed"]
    assert len(failed) == 3
    assert all("charge your saved card $5.00" in n.body for n in failed)
    assert "insufficient funds" in failed[0].body
    assert ["now off" in n.body for n in failed] == [False, False, True]


async def test_a_paid_lab_month_and_a_failed_payment_are_told_once_each(
    shop: Shop, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now(), free_minutes=0, credit_usd="1")
    auth = await log_in(shop.client, email=user.email)
    sub_id = await subscribed(shop, clock, auth, month_minutes=2)
    (paid,) = await told(db)
    assert paid.kind == "plan_renewal" and paid.title == "Sizzle Lab: a new month of GPU minutes"
    assert "You paid $19.00 for Sizzle Lab" in paid.body
    assert "You have 600 Sizzle Lab minutes to use until 01 Mar 2026 12:02 UTC" in paid.body
    clock.advance(3 * 60)
    failed = shop.stripe.invoice(
        sub_id, start=epoch(clock, minutes=-1), end=epoch(clock, minutes=30 * 24 * 60), paid=False
    )
    await send(shop, "invoice.payment_failed", failed)
    await send(shop, "invoice.payment_failed", failed)  # Stripe sent it twice
    renewal = [n for n in await told(db) if n.key.startswith("plan_payment_failed:")]
    assert len(renewal) == 1 and "declined" in renewal[0].body
    assert "no new Sizzle Lab minutes are added" in renewal[0].body
