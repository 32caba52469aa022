"""Money in = balance + spent + refunded, to the micro-dollar, over random histories.

Each example is a fresh database and a run of random steps: buying packages (credited by the
webhook, by the return page, by both, by replays, or only after a delayed payment), refunds
(all or part, which Stripe accepts, refuses, or fails later), auto-top-ups (charged,
declined, or confirmed later by a replayed webhook), and GPU sessions that spend credit
through the real metering. Through the real Payments code and the `stripe` client
against the fake Stripe on loopback.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import event as hypothesis_event
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import LedgerEntry, Purchase, Refund
from sizzle.errors import SizzleError
from sizzle.services import accounts, ledger, sessions
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.conftest import POSTGRES_URL, TEST_SECRET, _empty_postgres
from tests.payments.fake_stripe import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    FakeStripe,
    build_app,
    event,
    signed,
)
from tests.providers.fakes.server import serve

USERS = 2
HOW_PAID = ("webhook", "return_page", "both", "replayed", "delayed", "delayed_then_failed")
FATES = ("accepted", "refused", "fails_later")

buy = st.tuples(
    st.just("buy"),
    st.integers(0, USERS - 1),
    st.sampled_from(["5", "20", "50"]),
    st.sampled_from(HOW_PAID),
)
refund = st.tuples(
    st.just("refund"),
    st.integers(0, USERS - 1),
    st.one_of(st.none(), st.integers(1, 6000)),  # cents, or all that can be
    st.sampled_from(FATES),
)
use = st.tuples(st.just("use"), st.integers(0, USERS - 1), st.integers(30, 900), st.just(""))
top_up = st.tuples(
    st.just("top_up"),
    st.integers(0, USERS - 1),
    st.sampled_from(["2", "30"]),  # threshold in dollars: 30 is above any one purchase of 5
    st.sampled_from(["succeeded", "declined", "processing"]),
)
STEPS = st.lists(st.one_of(buy, refund, use, top_up), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def stripe_fake() -> Iterator[tuple[FakeStripe, str]]:
    fake = FakeStripe()
    with serve(build_app(fake)) as url:
        yield fake, url


class History:
    """One example: its own database and event loop, the users, what Stripe was told."""

    def __init__(self, template_url: str, stripe: tuple[FakeStripe, str]) -> None:
        self.fake, url = stripe
        self.loop = asyncio.new_event_loop()
        self.workdir = Path(tempfile.mkdtemp(prefix="sizzle-money-"))
        if POSTGRES_URL:
            db_url = template_url
        else:
            target = self.workdir / "sizzle.db"
            shutil.copyfile(Path(template_url.removeprefix("sqlite+aiosqlite:///")), target)
            db_url = f"sqlite+aiosqlite:///{target}"
        self.clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
        self.settings = Settings(
            home=self.workdir,
            database_url=db_url,
            secret_key=TEST_SECRET,
            providers="demo",
            demo_provision_seconds=5,
            demo_capacity=8,
            free_minutes=0,
            stripe_secret_key=SECRET_KEY,
            stripe_webhook_secret=WEBHOOK_SECRET,
            stripe_api_base=url,
        )
        self.state = AppState.build(self.settings, clock=self.clock)
        if POSTGRES_URL:
            self.run(_empty_postgres(self.state.db))
        self.users = [
            self.run(self._user(f"money{i}@example.com", plan="enterprise")) for i in range(USERS)
        ]

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.state.close())
        self.loop.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def _user(self, email: str, *, plan: str) -> Any:
        async with self.state.db.transaction() as tx:
            return await accounts.create_user(
                tx,
                email=email,
                password="money in, money out",
                now=self.clock.now(),
                free_minutes=0,
                plan=plan,
            )

    async def webhook(self, kind: str, obj: dict[str, Any]) -> None:
        body, header = signed(event(kind, dict(obj)))
        await self.state.payments.handle_webhook(body, header)

    async def buy(self, user: Any, package: str, how: str) -> None:
        payments = self.state.payments
        started = await payments.start_checkout(
            user, package, success_url="https://x/{PURCHASE_ID}", cancel_url="https://x"
        )
        (session_id,) = [
            sid
            for sid, s in self.fake.sessions.items()
            if s["client_reference_id"] == started.purchase_id
        ]
        session = self.fake.sessions[session_id]
        if how == "delayed":
            await self.webhook("checkout.session.completed", session)  # unpaid yet
            await self.webhook(
                "checkout.session.async_payment_succeeded", self.fake.pay(session_id)
            )
            return
        if how == "delayed_then_failed":
            await self.webhook("checkout.session.completed", session)
            await self.webhook("checkout.session.async_payment_failed", session)
            return
        self.fake.pay(session_id)
        if how in ("webhook", "both", "replayed"):
            await self.webhook("checkout.session.completed", session)
        if how in ("return_page", "both"):
            await payments.refresh(started.purchase_id, user_id=user.id)
        if how == "replayed":
            for kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
                await self.webhook(kind, session)

    async def refund(self, user: Any, cents: int | None, fate: str) -> None:
        async with self.state.db.read() as tx:
            purchase_id = await tx.scalar(
                select(Purchase.id)
                .where(Purchase.user_id == user.id, Purchase.status == "paid")
                .order_by(Purchase.created_at.desc(), Purchase.id.desc())
                .limit(1)
            )
        if purchase_id is None:
            return
        self.fake.refuse_refunds = fate == "refused"
        self.fake.refund_status = "pending" if fate == "fails_later" else "succeeded"
        try:
            done = await self.state.payments.refunds.refund(
                purchase_id,
                amount_micros=None if cents is None else cents * 10_000,
                operator="operator:test",
            )
        except SizzleError:
            return  # over the cap, nothing left, or Stripe refused: nothing may change
        finally:
            self.fake.refuse_refunds = False
        if fate == "fails_later" and done.stripe_refund_id:
            failed = {**self.fake.refunds[done.stripe_refund_id], "status": "failed"}
            await self.webhook("refund.failed", failed)
            await self.webhook("refund.failed", failed)  # and again: once is enough

    async def top_up(self, user: Any, threshold: str, outcome: str) -> None:
        """Turn auto-top-up on (if a card is saved); later metering passes may charge it. A
        charge left processing is then confirmed by its webhook, twice."""
        self.fake.intent_outcome = outcome
        try:
            await self.state.payments.top_ups.configure(
                user, enabled=True, threshold_micros=int(threshold) * 1_000_000, package_id="5"
            )
        except SizzleError:
            return  # no saved card yet
        await self.state.jobs.meter()
        for intent in list(self.fake.payment_intents.values()):
            if intent["status"] == "processing":
                intent["status"] = "succeeded"
                await self.webhook("payment_intent.succeeded", intent)
                await self.webhook("payment_intent.succeeded", intent)

    async def use(self, user: Any, seconds: int) -> None:
        state, clock = self.state, self.clock
        try:
            created = await sessions.create_session(
                state.db,
                state.orchestrator,
                user_id=user.id,
                tier_name="starter",
                model=None,
                max_minutes=None,
                now=clock.now(),
            )
        except SizzleError:
            return  # no credit for a minute: fine, nothing spent
        await state.jobs.run_once()
        clock.advance(5)
        await state.jobs.run_once()
        try:
            await sessions.start_session(
                state.db, session_id=created.id, user=user, now=clock.now()
            )
        except SizzleError:
            await sessions.stop_session(
                state.db, state.providers, session_id=created.id, user=user, now=clock.now()
            )
            return
        for _ in range(seconds // 30):
            clock.advance(30)
            await state.jobs.meter()
        await sessions.stop_session(
            state.db, state.providers, session_id=created.id, user=user, now=clock.now()
        )
        await state.jobs.meter()

    async def check(self) -> None:
        """The invariants, for every user."""
        db: Database = self.state.db
        async with db.read() as tx:
            for user in self.users:
                money = await ledger.balances(tx, user.id)
                assert money.credit_micros >= 0
                bought = (
                    await tx.scalar(
                        select(func.coalesce(func.sum(Purchase.credit_micros), 0)).where(
                            Purchase.user_id == user.id, Purchase.status == "paid"
                        )
                    )
                ) or 0
                refunded = (
                    await tx.scalar(
                        select(
                            func.coalesce(func.sum(Refund.amount_micros + Refund.bonus_micros), 0)
                        )
                        .join(Purchase, Purchase.id == Refund.purchase_id)
                        .where(Purchase.user_id == user.id, Refund.status != "failed")
                    )
                ) or 0
                spent = (
                    await tx.scalar(
                        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                            LedgerEntry.user_id == user.id,
                            LedgerEntry.kind == "session_minute",
                            LedgerEntry.unit == ledger.USD,
                        )
                    )
                ) or 0
                given_back = (
                    await tx.scalar(
                        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                            LedgerEntry.user_id == user.id,
                            LedgerEntry.kind == "session_minute_refund",
                            LedgerEntry.unit == ledger.USD,
                        )
                    )
                ) or 0
                assert bought == money.credit_micros + (spent - given_back) + refunded
            credited = await tx.execute(
                select(LedgerEntry.idempotency_key, func.count())
                .where(LedgerEntry.kind.in_(("purchase", "purchase_bonus")))
                .group_by(LedgerEntry.idempotency_key)
            )
            assert all(count == 1 for _key, count in credited)
            paid_rows = await tx.scalar(
                select(func.count()).select_from(Purchase).where(Purchase.status == "paid")
            )
            purchase_entries = await tx.scalar(
                select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "purchase")
            )
            assert paid_rows == purchase_entries  # each paid purchase credited exactly once
            top_ups = await tx.scalar(
                select(func.count())
                .select_from(Purchase)
                .where(Purchase.source == "auto_top_up", Purchase.status == "paid")
            )
            hypothesis_event(f"auto-top-ups paid: {'some' if top_ups else 'none'}")
            over = await tx.execute(
                select(Purchase.id)
                .join(Refund, Refund.purchase_id == Purchase.id)
                .where(Refund.status != "failed")
                .group_by(Purchase.id, Purchase.paid_micros)
                .having(func.sum(Refund.amount_micros) > Purchase.paid_micros)
            )
            assert over.first() is None  # never more back than was paid


def test_money_in_equals_balance_spent_and_refunded(
    migrated_template: str,
    stripe_fake: tuple[FakeStripe, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(accounts, "hash_password", lambda password: "not-a-real-hash")

    @given(steps=STEPS)
    @hypothesis_settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    def history(steps: list[tuple[str, int, Any, Any]]) -> None:
        world = History(migrated_template, stripe_fake)
        try:
            for kind, who, a, b in steps:
                user = world.users[who]
                if kind == "buy":
                    world.run(world.buy(user, a, b))
                elif kind == "refund":
                    world.run(world.refund(user, a, b))
                elif kind == "top_up":
                    world.run(world.top_up(user, a, b))
                else:
                    world.run(world.use(user, a))
                world.run(world.check())
        finally:
            world.close()

    history()
