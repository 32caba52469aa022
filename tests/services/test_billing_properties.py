"""The money rules under random histories: a hypothesis state machine over sessions, jobs,
clock moves, credit grants, paid Sizzle Lab months, monthly budgets, idle auto-stop (uses,
time passing unused, the idle pass before or after metering) and server crashes, checked
against its own model of active time. Histories start shortly before a month's end (UTC), so
budgets meet a new month too.

The machine is synchronous and owns one event loop; every example gets a fresh database
(a copy of the migrated SQLite template, or the emptied PostgreSQL test database).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from sizzle.clock import FakeClock, to_ms
from sizzle.db.database import Database
from sizzle.db.models import (
    GpuSession,
    LabSubscription,
    LedgerAccount,
    LedgerEntry,
    MonthlySpend,
    SessionEvent,
    User,
)
from sizzle.domain.budget import month_of, reached
from sizzle.domain.idle import IDLE_ACTOR
from sizzle.domain.lifecycle import SessionStatus, can_transition
from sizzle.domain.money import MS_PER_MINUTE, minutes_affordable, minutes_started
from sizzle.domain.tiers import PLANS, TIERS
from sizzle.errors import (
    BudgetReached,
    Conflict,
    Forbidden,
    InsufficientCredit,
    InvalidTransition,
    NoCapacity,
    SizzleError,
)
from sizzle.services import accounts, activity, budget, ledger, sessions
from sizzle.services.lifecycle import active_ms
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.conftest import POSTGRES_URL, TEST_SECRET, _empty_postgres

S = SessionStatus
T = TypeVar("T")
START = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
START_MS = to_ms(START)
PROVISION_SECONDS = 5
ABANDON_MINUTES = 10

# Small amounts next to the tier prices ($0.15 / $0.45 / $1.50 / $4.00 a minute), so credit
# runs out mid-session often and the insufficient-credit path is walked.
CREDIT_AMOUNTS = [1, 149_999, 150_000, 450_000, 1_000_000, 3_000_000]
# Monthly budgets of a few minutes' price, so they are reached often; None removes one.
BUDGETS = [None, 150_000, 300_000, 449_999, 600_000, 1_500_000]
CLOCK_MOVES_MS = st.one_of(
    st.integers(min_value=0, max_value=400).map(lambda s: s * 1000),
    st.integers(min_value=0, max_value=6).map(lambda k: k * MS_PER_MINUTE),
    st.integers(min_value=0, max_value=400_000),
)
# Mostly pick a session the action fits; sometimes any, to walk the refusals too.
PICKS = st.tuples(st.sampled_from([True, True, True, False]), st.integers(0, 1_000))
# Idle limits short next to the clock's moves, so sessions reach them often; None: never.
IDLE_LIMITS = [None, 1, 5]
# How far past a session's idle limit time goes unused: exactly to it (a minute's start when
# nothing used it since it started), just past it, or well past it.
PAST_THE_LIMIT_MS = [0, 1, 999, 30_000, 60_000, 150_000]


class SequentialIds:
    """uuid4 stand-in: ids (and so the meter's order of sessions) repeat when an example is
    replayed, which hypothesis needs to shrink a failure."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._numbers = itertools.count(1)

    def __call__(self) -> uuid.UUID:
        return uuid.UUID(int=next(self._numbers))


@dataclass
class ModelSession:
    """What the test expects of one session, kept independently of the database."""

    id: str
    user_id: str
    price: int
    status: SessionStatus
    lab_covered: bool = False  # Sizzle Lab's minutes may pay for it
    before_ms: int = 0
    since_ms: int | None = None
    idle_minutes: int | None = None  # paused after this long unused; None: never
    last_use_ms: int | None = None  # its last use while active (the start counts)

    def active_ms(self, now_ms: int) -> int:
        running = 0 if self.since_ms is None else now_ms - self.since_ms
        return self.before_ms + running

    def idle_limit_ms(self) -> int | None:
        """When the idle pass pauses it, if nothing uses it before (running sessions only)."""
        if self.since_ms is None or self.idle_minutes is None or self.last_use_ms is None:
            return None
        return self.last_use_ms + self.idle_minutes * MS_PER_MINUTE

    def billable_ms(self, now_ms: int) -> int:
        """Active time that may be charged: none after the idle limit."""
        limit = self.idle_limit_ms()
        return self.active_ms(now_ms if limit is None else min(now_ms, limit))

    def run_from(self, now_ms: int) -> None:
        """Started or resumed now: active, and its idle time counts from here."""
        self.status, self.since_ms, self.last_use_ms = S.ACTIVE, now_ms, now_ms


class BillingMachine(RuleBasedStateMachine):
    def __init__(self, template_url: str, ids: SequentialIds) -> None:
        super().__init__()
        ids.restart()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(START)
        self.now_ms = 0  # the model's time: ms since START, moved only with the clock
        self.workdir: Path | None = None
        if POSTGRES_URL:
            self.url = template_url
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="sizzle-billing-"))
            template = Path(template_url.removeprefix("sqlite+aiosqlite:///"))
            shutil.copyfile(template, self.workdir / "sizzle.db")
            self.url = f"sqlite+aiosqlite:///{self.workdir / 'sizzle.db'}"
        self.state: AppState | None = None
        self.settings: Settings | None = None
        self.users: list[User] = []
        self.sessions: dict[str, ModelSession] = {}
        self.invoices = 0
        self.budgets: dict[str, int | None] = {}
        # the month's spend (by the ledger) when last looked at, per user and month
        self.spend_seen: dict[tuple[str, str], int] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @property
    def app(self) -> AppState:
        assert self.state is not None
        return self.state

    def advance(self, ms: int) -> None:
        self.clock.advance(ms / 1000)
        self.now_ms += ms

    def balances(self, user_id: str) -> ledger.Balances:
        async def read() -> ledger.Balances:
            async with self.app.db.transaction() as tx:
                return await ledger.balances(tx, user_id)

        return self.run(read())

    def load(self, session_id: str) -> GpuSession:
        async def read() -> GpuSession:
            async with self.app.db.transaction() as tx:
                found = await tx.get(GpuSession, session_id)
                assert found is not None
                return found

        return self.run(read())

    def load_all(self) -> list[GpuSession]:
        async def read() -> list[GpuSession]:
            async with self.app.db.transaction() as tx:
                return list(await tx.scalars(select(GpuSession)))

        return self.run(read())

    def pick(self, choice: tuple[bool, int], *fitting: SessionStatus) -> ModelSession:
        prefer_fitting, index = choice
        candidates = list(self.sessions.values())
        if prefer_fitting:
            candidates = [m for m in candidates if m.status in fitting] or candidates
        return candidates[index % len(candidates)]

    def can_pay_first_minute(self, user_id: str, price: int, *, lab_covered: bool) -> bool:
        funds = self.balances(user_id)
        return (
            minutes_affordable(
                free_minutes=funds.free_minutes,
                balance_micros=funds.credit_micros,
                price_micros=price,
                included_minutes=funds.included_minutes if lab_covered else 0,
            )
            >= 1
        )

    def user(self, user_id: str) -> User:
        return next(u for u in self.users if u.id == user_id)

    def spend_by_ledger(self) -> dict[tuple[str, str], int]:
        """Credit minute charges by user and the month (UTC) they were charged in, less each
        refund of one in its charge's month: what the budget counts, read from the ledger."""

        async def read() -> list[LedgerEntry]:
            async with self.app.db.transaction() as tx:
                return list(
                    await tx.scalars(
                        select(LedgerEntry).where(
                            LedgerEntry.kind.in_(("session_minute", "session_minute_refund")),
                            LedgerEntry.unit == ledger.USD,
                        )
                    )
                )

        entries = self.run(read())
        charges = {e.idempotency_key: e for e in entries if e.kind == "session_minute"}
        spend: dict[tuple[str, str], int] = defaultdict(int)
        for entry in entries:
            charge = charges[entry.idempotency_key.removesuffix(":refund")]
            sign = 1 if entry.kind == "session_minute" else -1
            spend[str(charge.user_id), month_of(charge.created_at)] += sign * entry.amount
        return spend

    def stopped_at(self, user_id: str) -> int | None:
        """The budget metering last refused a minute under, this month (the database's word)."""

        async def read() -> int | None:
            async with self.app.db.transaction() as tx:
                row = await tx.get(MonthlySpend, (user_id, month_of(self.clock.now())))
                return None if row is None else row.stopped_at_micros

        return self.run(read())

    def budget_reached(self, user_id: str) -> bool:
        spent = self.spend_by_ledger().get((user_id, month_of(self.clock.now())), 0)
        return reached(self.budgets.get(user_id), spent, self.stopped_at(user_id))

    def budget_refuses(self, user_id: str, price: int, *, lab_covered: bool) -> bool:
        """Whether the budget refuses a start: reached, or a first minute that credit would
        pay and that would take the month's spend over it."""
        limit = self.budgets.get(user_id)
        if limit is None:
            return False
        if self.budget_reached(user_id):
            return True
        funds = self.balances(user_id)
        without_credit = funds.free_minutes + (funds.included_minutes if lab_covered else 0)
        spent = self.spend_by_ledger().get((user_id, month_of(self.clock.now())), 0)
        return without_credit < 1 <= funds.credit_micros // price and spent + price > limit

    def assert_out_of_money_or_budget(self, user_id: str, *, price: int, lab_covered: bool) -> None:
        """A minute was refused: the user could not pay it, or the budget had no room for it."""
        limit = self.budgets.get(user_id)
        if limit is not None:
            spent = self.spend_by_ledger().get((user_id, month_of(self.clock.now())), 0)
            if spent + price > limit or self.budget_reached(user_id):
                return
        self.assert_broke(user_id, price=price, lab_covered=lab_covered)

    def leave_active(
        self, model: ModelSession, stored: GpuSession, *, at_ms: int | None = None
    ) -> bool:
        """Freeze the model's active time as the session left `active` (now, or at `at_ms`);
        True if cut short for want of money or budget.

        Every minute started before its idle limit was charged, and none after; the time is
        cut back to the last paid minute (so time past the idle limit that no minute paid for
        is never counted).
        """
        at_ms = self.now_ms if at_ms is None else at_ms
        spent = model.active_ms(at_ms)
        owed = minutes_started(model.billable_ms(at_ms))
        cut_short = stored.charged_minutes < owed
        if not cut_short:
            assert stored.charged_minutes == owed, (stored.charged_minutes, owed)
        model.before_ms = min(spent, stored.charged_minutes * MS_PER_MINUTE)
        model.since_ms = model.last_use_ms = None
        return cut_short

    def assert_broke(self, user_id: str, *, price: int, lab_covered: bool) -> None:
        """The user could not pay one more minute of `price`: no free minutes, too little
        credit, and no Lab minutes where they would have paid."""
        funds = self.balances(user_id)
        assert funds.free_minutes == 0, funds
        assert funds.credit_micros < price, funds
        if lab_covered:
            assert funds.included_minutes == 0, funds

    def expect(self, action: Coroutine[Any, Any, None], error: type[SizzleError] | None) -> bool:
        """Run `action`; it must fail with exactly `error`, or succeed when that is None."""
        try:
            self.run(action)
        except SizzleError as exc:
            assert error is not None, f"unexpected {exc!r}"
            assert type(exc) is error, f"expected {error.__name__}, got {exc!r}"
            return False
        assert error is None, f"expected {error.__name__}"
        return True

    # -- setup ------------------------------------------------------------------------------

    @initialize(
        free_minutes=st.integers(min_value=0, max_value=3),
        users=st.lists(
            st.tuples(
                st.sampled_from(["free", "pro"]),
                st.sampled_from([0, *CREDIT_AMOUNTS]),
                st.sampled_from(BUDGETS),
            ),
            min_size=1,
            max_size=2,
        ),
    )
    def sign_up(self, free_minutes: int, users: list[tuple[str, int, int | None]]) -> None:
        self.settings = settings = Settings(
            home=self.workdir or Path(tempfile.gettempdir()),
            database_url=self.url,
            secret_key=TEST_SECRET,
            providers="demo",
            demo_provision_seconds=PROVISION_SECONDS,
            demo_capacity=2,  # small, so launches also fail for want of a GPU
            abandon_minutes=ABANDON_MINUTES,
            free_minutes=free_minutes,
        )

        async def setup() -> None:
            db = Database(self.url)
            if db.is_postgres:
                await _empty_postgres(db)
            self.state = AppState.build(settings, clock=self.clock, db=db)
            for number, (plan, credit, limit) in enumerate(users):
                async with db.transaction() as tx:
                    user = await accounts.create_user(
                        tx,
                        email=f"user{number}@example.com",
                        password="correct horse battery",
                        now=self.clock.now(),
                        free_minutes=settings.free_minutes,
                        plan=plan,
                    )
                    if credit:
                        await accounts.grant_credits(
                            tx, user, credit, now=self.clock.now(), granted_by="test"
                        )
                    await budget.set_budget(tx, user.id, limit, now=self.clock.now())
                self.users.append(user)
                self.budgets[user.id] = limit

        self.run(setup())

    def teardown(self) -> None:
        try:
            if self.state is not None:
                self.run(self.state.db.dispose())
        finally:
            self.loop.close()
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # -- rules ------------------------------------------------------------------------------

    @rule(
        user_index=st.integers(0, 1),
        tier=st.sampled_from(sorted(TIERS)),
        idle=st.sampled_from(IDLE_LIMITS),
    )
    def create_session(self, user_index: int, tier: str, idle: int | None) -> None:
        self.create(self.users[user_index % len(self.users)], tier, idle)

    @rule()
    def run_provisioning(self) -> None:
        """Launch pending sessions, wait out the demo's provisioning time, mark them ready."""
        self.run(self.app.jobs.housekeep())
        self.advance(PROVISION_SECONDS * 1000 + 1000)
        self.run(self.app.jobs.housekeep())
        self.sync_after_housekeeping()

    @rule(
        user_index=st.integers(0, 1),
        tier=st.sampled_from(sorted(TIERS)),
        idle=st.sampled_from(IDLE_LIMITS),
    )
    def rent_a_gpu(self, user_index: int, tier: str, idle: int | None) -> None:
        """What a user does in one go: ask for a session, wait until ready, start it."""
        model = self.create(self.users[user_index % len(self.users)], tier, idle)
        self.run_provisioning()
        if model is not None and model.status is S.READY:
            self.start_session(model)

    def create(self, user: User, tier: str, idle: int | None) -> ModelSession | None:
        plan, price = PLANS[user.plan], TIERS[tier].price_micros_per_minute
        assert self.settings is not None
        covered = self.settings.lab.covers(tier)
        live = sum(1 for m in self.sessions.values() if m.user_id == user.id and m.status.is_live())
        expected: type[SizzleError] | None = None
        if tier not in plan.allowed_tiers:
            expected = Forbidden
        elif live >= plan.max_concurrent_sessions:
            expected = Conflict
        elif self.budget_refuses(user.id, price, lab_covered=covered):
            expected = BudgetReached
        elif not self.can_pay_first_minute(user.id, price, lab_covered=covered):
            expected = InsufficientCredit
        try:
            created = self.run(
                sessions.create_session(
                    self.app.db,
                    self.app.orchestrator,
                    user_id=user.id,
                    tier_name=tier,
                    model=None,
                    max_minutes=None,
                    idle_minutes=idle,
                    now=self.clock.now(),
                    lab_tiers=self.settings.lab.tiers,
                )
            )
        except SizzleError as exc:
            # capacity is the demo provider's business; every other refusal is predicted
            assert type(exc) is (expected or NoCapacity), f"expected {expected}, got {exc!r}"
            return None
        assert expected is None, f"expected {expected.__name__}"
        assert created.status == S.PENDING.value
        assert created.lab_covered is covered
        model = ModelSession(
            created.id, user.id, price, S.PENDING, lab_covered=covered, idle_minutes=idle
        )
        self.sessions[created.id] = model
        return model

    @precondition(lambda self: self.sessions)
    @rule(choice=PICKS)
    def start(self, choice: tuple[bool, int]) -> None:
        self.start_session(self.pick(choice, S.READY))

    def start_session(self, model: ModelSession) -> None:
        user = self.user(model.user_id)
        expected: type[SizzleError] | None = None
        if model.status is not S.READY:
            expected = InvalidTransition
        elif self.budget_refuses(user.id, model.price, lab_covered=model.lab_covered):
            expected = BudgetReached
        elif not self.can_pay_first_minute(user.id, model.price, lab_covered=model.lab_covered):
            expected = InsufficientCredit
        action = sessions.start_session(
            self.app.db, session_id=model.id, user=user, now=self.clock.now()
        )
        if self.expect(action, expected):
            model.run_from(self.now_ms)
        assert self.load(model.id).status == model.status.value

    @precondition(lambda self: self.sessions)
    @rule(choice=PICKS)
    def pause(self, choice: tuple[bool, int]) -> None:
        model = self.pick(choice, S.ACTIVE)
        expected = None if model.status is S.ACTIVE else InvalidTransition
        action = sessions.pause_session(
            self.app.db,
            self.app.providers,
            session_id=model.id,
            user=self.user(model.user_id),
            now=self.clock.now(),
        )
        if self.expect(action, expected):
            stored = self.load(model.id)
            assert stored.status == S.PAUSED.value
            if self.leave_active(model, stored):
                self.assert_out_of_money_or_budget(
                    model.user_id, price=model.price, lab_covered=model.lab_covered
                )
            model.status = S.PAUSED

    @precondition(lambda self: self.sessions)
    @rule(choice=PICKS)
    def resume(self, choice: tuple[bool, int]) -> None:
        model = self.pick(choice, S.PAUSED)
        expected: type[SizzleError] | None = None
        if model.status is not S.PAUSED:
            expected = InvalidTransition
        elif self.budget_refuses(model.user_id, model.price, lab_covered=model.lab_covered):
            expected = BudgetReached
        elif not self.can_pay_first_minute(
            model.user_id, model.price, lab_covered=model.lab_covered
        ):
            expected = InsufficientCredit
        action = sessions.resume_session(
            self.app.db,
            self.app.providers,
            session_id=model.id,
            user=self.user(model.user_id),
            now=self.clock.now(),
        )
        if self.expect(action, expected):
            model.run_from(self.now_ms)
        assert self.load(model.id).status == model.status.value

    @precondition(lambda self: self.sessions)
    @rule(choice=PICKS)
    def stop(self, choice: tuple[bool, int]) -> None:
        model = self.pick(choice, S.ACTIVE, S.PAUSED, S.READY, S.PENDING, S.PROVISIONING)
        action = sessions.stop_session(
            self.app.db,
            self.app.providers,
            session_id=model.id,
            user=self.user(model.user_id),
            now=self.clock.now(),
        )
        assert self.expect(action, None)
        stored = self.load(model.id)
        if model.status.is_terminal():
            assert stored.status == model.status.value  # stopping an ended session changes nothing
            return
        assert stored.status == S.TERMINATED.value
        assert stored.end_reason == "user"
        if model.status is S.ACTIVE and self.leave_active(model, stored):
            self.assert_out_of_money_or_budget(
                model.user_id, price=model.price, lab_covered=model.lab_covered
            )
        model.status = S.TERMINATED

    @rule()
    def meter(self) -> None:
        self.metering_pass()

    @precondition(lambda self: self.sessions)
    @rule(choice=PICKS, how=st.sampled_from(["request", "keep_alive"]))
    def use(self, choice: tuple[bool, int], how: str) -> None:
        """The user chats with the session (a request, counted off its path and written in a
        batch) or presses "Keep it running": either is use while it runs."""
        model = self.pick(choice, S.ACTIVE)
        if how == "request":
            self.app.activity.touch(model.id)
            self.run(self.app.activity.flush())
        else:
            action = activity.keep_alive(
                self.app.db,
                session_id=model.id,
                user=self.user(model.user_id),
                now_ms=to_ms(self.clock.now()),
            )
            self.expect(action, None if model.status is S.ACTIVE else Conflict)
        if model.status is S.ACTIVE:
            model.last_use_ms = self.now_ms

    @rule()
    def idle_pass(self) -> None:
        self.run(self.app.jobs.check_idle())
        self.sync_idle_pauses()

    @precondition(lambda self: any(m.idle_limit_ms() is not None for m in self.sessions.values()))
    @rule(
        index=st.integers(0, 1_000),
        past=st.sampled_from(PAST_THE_LIMIT_MS),
        meter_first=st.booleans(),
    )
    def leave_it_unused(self, index: int, past: int, meter_first: bool) -> None:
        """Nobody uses a running session up to its idle limit (or past it); the metering pass
        may come first, then the idle pass."""
        running = [m for m in self.sessions.values() if m.idle_limit_ms() is not None]
        self.walk_away(running[index % len(running)], past=past, meter_first=meter_first)

    @rule(
        user_index=st.integers(0, 1),
        tier=st.sampled_from(sorted(TIERS)),
        idle=st.sampled_from([i for i in IDLE_LIMITS if i is not None]),
        past=st.sampled_from(PAST_THE_LIMIT_MS),
        meter_first=st.booleans(),
    )
    def rent_a_gpu_and_walk_away(
        self, user_index: int, tier: str, idle: int, past: int, meter_first: bool
    ) -> None:
        """What a forgetful user does: rent a GPU with an idle limit, start it, never use it."""
        model = self.create(self.users[user_index % len(self.users)], tier, idle)
        self.run_provisioning()
        if model is not None and model.status is S.READY:
            self.start_session(model)
        if model is not None and model.status is S.ACTIVE:
            self.walk_away(model, past=past, meter_first=meter_first)

    def walk_away(self, model: ModelSession, *, past: int, meter_first: bool) -> None:
        limit = model.idle_limit_ms()
        assert limit is not None
        self.advance(max(limit + past - self.now_ms, 0))
        if meter_first:
            self.metering_pass()
        self.idle_pass()

    @rule(
        seconds=st.integers(min_value=0, max_value=400),
        interval=st.sampled_from([15, 60]),
    )
    def run_for_a_while(self, seconds: int, interval: int) -> None:
        """Time passes with the metering job running on its interval, as under `sizzle serve`."""
        for _ in range(seconds // interval):
            self.advance(interval * 1000)
            self.metering_pass()

    def metering_pass(self) -> None:
        self.run(self.app.jobs.meter())
        starved: dict[str, list[ModelSession]] = defaultdict(list)
        for model in self.sessions.values():
            if model.status is not S.ACTIVE:
                continue
            stored = self.load(model.id)
            if stored.status == S.ACTIVE.value:
                # every minute started before its idle limit, none at or after it
                assert stored.charged_minutes == minutes_started(model.billable_ms(self.now_ms))
                continue
            assert stored.status == S.TERMINATED.value
            assert stored.end_reason in ("insufficient_credits", "budget"), stored.end_reason
            cut_short = self.leave_active(model, stored)
            model.status = S.TERMINATED
            if stored.end_reason == "budget":
                # its minute was refused for the budget, or another session's was: either way
                # the budget is reached now, and the session ran no further than it paid for
                assert self.budget_reached(model.user_id), model.user_id
                continue
            assert cut_short, "stopped although every minute was paid"
            starved[model.user_id].append(model)
        for user_id, models in starved.items():
            self.assert_broke(
                user_id,
                price=max(m.price for m in models),
                lab_covered=any(m.lab_covered for m in models),
            )
        for model in self.sessions.values():  # at 100 % nothing of the user runs on
            if model.status is S.ACTIVE:
                assert not self.budget_reached(model.user_id), model.id
        self.assert_charged_minutes_follow_active_time()
        self.assert_lab_minutes_end_with_their_month()

    def assert_lab_minutes_end_with_their_month(self) -> None:
        """After a pass, a user whose Lab month has ended (or who never paid one) has no Lab
        minutes left: what was unused expired, and nothing was spent from it after its end."""

        async def read() -> list[tuple[str, int, datetime | None]]:
            async with self.app.db.transaction() as tx:
                rows = await tx.execute(
                    select(
                        LedgerAccount.user_id,
                        LedgerAccount.balance,
                        LabSubscription.minutes_expire_at,
                    )
                    .outerjoin(LabSubscription, LabSubscription.user_id == LedgerAccount.user_id)
                    .where(LedgerAccount.kind == "included_minutes")
                )
                return [(str(u), int(b), e) for u, b, e in rows]

        now = self.clock.now()
        running: dict[str, bool] = defaultdict(bool)
        left_of: dict[str, int] = {}
        for user_id, left, expires in self.run(read()):
            left_of[user_id] = left
            running[user_id] |= expires is not None and expires > now
        for user_id, left in left_of.items():
            if not running[user_id]:
                assert left == 0, (user_id, left)

    @rule(user_index=st.integers(0, 1), limit=st.sampled_from(BUDGETS))
    def set_budget(self, user_index: int, limit: int | None) -> None:
        """The user sets, changes or removes the monthly budget (on the account page)."""
        user = self.users[user_index % len(self.users)]

        async def save() -> None:
            async with self.app.db.transaction() as tx:
                await budget.set_budget(tx, user.id, limit, now=self.clock.now())

        self.run(save())
        self.budgets[user.id] = limit

    @rule(ms=CLOCK_MOVES_MS)
    def move_clock(self, ms: int) -> None:
        self.advance(ms)

    @rule(user_index=st.integers(0, 1), micros=st.sampled_from(CREDIT_AMOUNTS))
    def grant_credits(self, user_index: int, micros: int) -> None:
        user = self.users[user_index % len(self.users)]
        before = self.balances(user.id)

        async def grant() -> None:
            async with self.app.db.transaction() as tx:
                await accounts.grant_credits(
                    tx, user, micros, now=self.clock.now(), granted_by="test"
                )

        self.run(grant())
        assert self.balances(user.id).credit_micros == before.credit_micros + micros

    @rule(
        user_index=st.integers(0, 1),
        minutes=st.sampled_from([1, 3, 7]),
        month_seconds=st.sampled_from([30, 90, 240, 30 * 24 * 3600]),
    )
    def pay_a_lab_month(self, user_index: int, minutes: int, month_seconds: int) -> None:
        """Stripe says a Sizzle Lab month starting now is paid (short months, to cross ends)."""
        user = self.users[user_index % len(self.users)]
        lab_id, stripe_id = "lab" + user.id[3:], f"sub_test_{user.id}"

        async def pay() -> str:
            async with self.app.db.transaction() as tx:
                if await tx.get(LabSubscription, lab_id) is None:
                    tx.add(
                        LabSubscription(
                            id=lab_id,
                            user_id=user.id,
                            status="active",
                            price_micros=19_000_000,
                            included_minutes=minutes,
                            stripe_subscription_id=stripe_id,
                            cancel_at_period_end=False,
                            created_at=self.clock.now(),
                            updated_at=self.clock.now(),
                        )
                    )
            start = int(self.clock.now().timestamp())
            self.invoices += 1
            invoice = {
                "id": f"in_test_{self.invoices}",
                "currency": "usd",
                "amount_paid": 1900,
                "parent": {"subscription_details": {"subscription": stripe_id}},
                "lines": {"data": [{"period": {"start": start, "end": start + month_seconds}}]},
            }
            return await self.app.payments.lab.on_invoice_paid(invoice)

        assert self.run(pay()) in ("granted", "already_granted")

    @rule(downtime_ms=CLOCK_MOVES_MS)
    def crash_and_restart(self, downtime_ms: int) -> None:
        """The process dies and a new one starts on the same database; GPUs keep running."""
        self.run(self.app.db.dispose())
        self.state = None
        self.advance(downtime_ms)
        assert self.settings is not None
        self.state = AppState.build(self.settings, clock=self.clock, db=Database(self.url))

    # -- syncing after jobs that change statuses on their own ---------------------------------

    def sync_idle_pauses(self) -> None:
        """The idle pass paused every running session past its idle limit, at the limit itself,
        charged every minute started before it and none after; it left the others running."""
        for model in self.sessions.values():
            limit = model.idle_limit_ms()
            if model.status is not S.ACTIVE:
                continue
            stored = self.load(model.id)
            if limit is None or limit > self.now_ms:
                assert stored.status == S.ACTIVE.value, (model.id, stored.status)
                continue
            assert stored.status == S.PAUSED.value, (model.id, stored.status)
            assert stored.paused_at == START + timedelta(milliseconds=limit)
            assert self.last_event(model.id) == (IDLE_ACTOR, "idle")
            if self.leave_active(model, stored, at_ms=limit):
                self.assert_out_of_money_or_budget(
                    model.user_id, price=model.price, lab_covered=model.lab_covered
                )
            model.status = S.PAUSED

    def last_event(self, session_id: str) -> tuple[str, str | None]:
        async def read() -> tuple[str, str | None]:
            async with self.app.db.transaction() as tx:
                event = await tx.scalar(
                    select(SessionEvent)
                    .where(SessionEvent.session_id == session_id)
                    .order_by(SessionEvent.id.desc())
                    .limit(1)
                )
                assert event is not None
                return event.actor, event.reason

        return self.run(read())

    def sync_after_housekeeping(self) -> None:
        """Provisioning, the reaper and the idle pass moved some sessions; check each move,
        then follow it."""
        self.sync_idle_pauses()
        now = self.clock.now()
        for stored in self.load_all():
            model = self.sessions[stored.id]
            status = S(stored.status)
            if model.status in (S.PENDING, S.PROVISIONING):
                assert status in (S.PROVISIONING, S.READY, S.FAILED, S.TERMINATED), status
            elif model.status is S.READY and status is S.TERMINATED:
                assert stored.end_reason == "abandoned"
            else:
                assert status is model.status, (model.status, status)
            if status is S.READY:
                assert stored.ready_at is not None
                assert now - stored.ready_at < timedelta(minutes=ABANDON_MINUTES)
            if status is S.TERMINATED and model.status is not S.TERMINATED:
                assert stored.ready_at is not None
                assert now - stored.ready_at >= timedelta(minutes=ABANDON_MINUTES)
            model.status = status

    # -- invariants -------------------------------------------------------------------------

    def assert_charged_minutes_follow_active_time(self) -> None:
        now = self.clock.now()
        for stored in self.load_all():
            model = self.sessions[stored.id]
            assert active_ms(stored, now) == model.active_ms(self.now_ms), stored.id
            owed = minutes_started(model.billable_ms(self.now_ms))
            assert stored.charged_minutes == owed, stored.id

    @invariant()
    def active_time_is_what_the_model_expects(self) -> None:
        """Only active time counts: paused, waiting and ended time never do."""
        if self.state is None:
            return
        now = self.clock.now()
        for stored in self.load_all():
            model = self.sessions[stored.id]
            assert stored.status == model.status.value
            assert active_ms(stored, now) == model.active_ms(self.now_ms), stored.id
            spent = minutes_started(active_ms(stored, now))
            if model.status is S.ACTIVE:
                # never charged ahead of started time, nor for a minute begun unused past
                # the idle limit
                assert stored.charged_minutes <= minutes_started(model.billable_ms(self.now_ms))
                assert model.last_use_ms is not None
                assert stored.last_activity_ms == START_MS + model.last_use_ms, stored.id
                assert stored.idle_minutes == model.idle_minutes, stored.id
            else:
                assert stored.charged_minutes == spent  # paused or ended: what ran, no more

    @invariant()
    def no_charge_takes_a_month_over_the_budget(self) -> None:
        """The month's counter is what the ledger says, and a month's spend only ever grew
        to within the budget set at the time (a budget lowered below it charges nothing)."""
        if self.state is None:
            return

        async def read() -> dict[tuple[str, str], int]:
            async with self.app.db.transaction() as tx:
                rows = await tx.scalars(select(MonthlySpend))
                return {(r.user_id, r.month): r.spent_micros for r in rows if r.spent_micros}

        spend = self.spend_by_ledger()
        assert self.run(read()) == {key: value for key, value in spend.items() if value}
        for (user_id, month), spent in spend.items():
            limit = self.budgets.get(user_id)
            if spent > self.spend_seen.get((user_id, month), 0) and limit is not None:
                assert spent <= limit, (user_id, month, spent, limit)
            self.spend_seen[user_id, month] = spent

    @invariant()
    def every_status_change_is_recorded_and_allowed(self) -> None:
        if self.state is None:
            return

        async def read() -> dict[str, list[SessionEvent]]:
            async with self.app.db.transaction() as tx:
                events = await tx.scalars(select(SessionEvent).order_by(SessionEvent.id))
                chains: dict[str, list[SessionEvent]] = defaultdict(list)
                for event in events:
                    chains[event.session_id].append(event)
                return chains

        chains = self.run(read())
        for model in self.sessions.values():
            status = S.PENDING
            for change in chains.get(model.id, []):
                assert change.from_status == status.value
                assert can_transition(status, S(change.to_status))
                status = S(change.to_status)
            assert status is model.status

    @invariant()
    def ledger_is_balanced_and_never_negative(self) -> None:
        if self.state is None:
            return

        async def read() -> tuple[list[LedgerAccount], list[LedgerEntry]]:
            async with self.app.db.transaction() as tx:
                accounts_ = list(await tx.scalars(select(LedgerAccount)))
                entries = list(await tx.scalars(select(LedgerEntry)))
                return accounts_, entries

        all_accounts, entries = self.run(read())
        by_unit: dict[str, int] = defaultdict(int)
        moved: dict[int, int] = defaultdict(int)
        for entry in entries:
            assert entry.amount > 0
            moved[entry.credit_account_id] += entry.amount
            moved[entry.debit_account_id] -= entry.amount
        units = {account.id: account.unit for account in all_accounts}
        for entry in entries:  # both sides of an entry are in the entry's unit
            assert units[entry.debit_account_id] == units[entry.credit_account_id] == entry.unit
        for account in all_accounts:
            by_unit[account.unit] += account.balance
            assert account.balance == moved[account.id], account.name  # cache == sum of entries
            if account.user_id is not None:
                assert account.balance >= 0, account.name
        assert all(total == 0 for total in by_unit.values()), dict(by_unit)

    @invariant()
    def each_minute_is_charged_once_at_the_session_price(self) -> None:
        if self.state is None:
            return

        async def read() -> list[LedgerEntry]:
            async with self.app.db.transaction() as tx:
                return list(
                    await tx.scalars(
                        select(LedgerEntry).where(LedgerEntry.kind == "session_minute")
                    )
                )

        minutes: dict[str, list[int]] = defaultdict(list)
        paid_with_credit: set[str] = set()
        for entry in self.run(read()):
            assert entry.session_id is not None and entry.minute is not None
            model = self.sessions[entry.session_id]
            assert entry.user_id == model.user_id
            minutes[entry.session_id].append(entry.minute)
            if entry.unit == ledger.USD:
                assert entry.amount == model.price
                paid_with_credit.add(model.user_id)
            else:
                assert (entry.unit, entry.amount) == (ledger.MINUTES, 1)
        charged = {stored.id: stored.charged_minutes for stored in self.load_all()}
        for session_id, charged_minutes in charged.items():
            assert sorted(minutes.get(session_id, [])) == list(range(1, charged_minutes + 1))
        for user_id in paid_with_credit:  # free minutes are spent before credit
            assert self.balances(user_id).free_minutes == 0

    @invariant()
    def each_sessions_split_is_what_its_ledger_entries_say(self) -> None:
        """The counters of what paid a session (free, Lab, credit) are its entries' sums."""
        if self.state is None:
            return

        async def read() -> tuple[dict[int, str], list[LedgerEntry]]:
            async with self.app.db.transaction() as tx:
                kinds = {
                    account.id: account.kind
                    for account in await tx.scalars(
                        select(LedgerAccount).where(LedgerAccount.user_id.is_not(None))
                    )
                }
                entries = await tx.scalars(
                    select(LedgerEntry).where(
                        LedgerEntry.kind.in_(("session_minute", "session_minute_refund"))
                    )
                )
                return kinds, list(entries)

        kinds, entries = self.run(read())
        paid: dict[tuple[str | None, str], int] = defaultdict(int)
        for entry in entries:
            charge = entry.kind == "session_minute"
            payer = kinds[entry.debit_account_id if charge else entry.credit_account_id]
            paid[entry.session_id, payer] += entry.amount if charge else -entry.amount
        for stored in self.load_all():
            assert stored.free_minutes_used == paid[stored.id, "free_minutes"], stored.id
            assert stored.plan_minutes_used == paid[stored.id, "included_minutes"], stored.id
            assert stored.credit_charged_micros == paid[stored.id, "credit"], stored.id
            credit_minutes = stored.credit_charged_micros // stored.price_micros_per_minute
            assert stored.free_minutes_used + stored.plan_minutes_used + credit_minutes == (
                stored.charged_minutes
            )


def test_money_rules_hold_over_random_histories(
    migrated_template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # argon2 costs a quarter second a user; password hashing plays no part in billing
    monkeypatch.setattr(accounts, "hash_password", lambda password: "not-a-real-hash")
    ids = SequentialIds()
    monkeypatch.setattr(uuid, "uuid4", ids)
    run_state_machine_as_test(
        lambda: BillingMachine(migrated_template, ids),
        settings=hypothesis_settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        ),
    )
