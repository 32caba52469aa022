"""Two OS processes run metering passes at once against one PostgreSQL database.

The money rules must hold however the passes interleave: no (session, minute) charged twice,
every funded session charged exactly ceil(active / 60 s) minutes, balances equal to the sum of
their ledger entries, and no balance below zero (the starved sessions get what their owner
could pay, no more).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from sizzle.clock import FakeClock, from_ms, to_ms
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, MonthlySpend, User
from sizzle.domain.budget import month_of
from sizzle.domain.money import MS_PER_MINUTE, minutes_affordable, minutes_started, usd_to_micros
from sizzle.jobs.metering import run_metering_pass
from sizzle.services import accounts, budget, ledger, sessions
from sizzle.services.lifecycle import active_ms
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.conftest import TEST_SECRET
from tests.helpers import PASSWORD

pytestmark = pytest.mark.postgres_only

# Connects, says it is ready, waits for the start line, then runs one pass per `now` given.
WORKER = r"""
import asyncio, sys, time
from pathlib import Path
from sqlalchemy import text
from sizzle.clock import from_ms
from sizzle.db.database import Database
from sizzle.services.metering import charge_due_minutes

async def main(url, ready, go, nows):
    db = Database(url)
    async with db.transaction() as tx:
        await tx.execute(text("SELECT 1"))
    Path(ready).touch()
    deadline = time.monotonic() + 30
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit("no start signal")
        await asyncio.sleep(0.001)
    charged = 0
    for now_ms in nows:
        async with db.transaction() as tx:
            result = await charge_due_minutes(tx, now=from_ms(now_ms))
        charged += result.minutes_charged
    await db.dispose()
    print(charged)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], [int(n) for n in sys.argv[4].split(",")]))
"""


@dataclass
class Customer:
    """A user, what they were given, their sessions' tiers, and whether the race outruns them."""

    plan: str
    free_minutes: int
    credit_usd: str
    tiers: list[str]
    starves: bool
    budget_usd: str | None = None
    user: User | None = None
    session_ids: list[str] = field(default_factory=list)

    @property
    def credit_micros(self) -> int:
        return usd_to_micros(self.credit_usd)


def _customers() -> list[Customer]:
    """About 5 minutes of use per session in both races (sessions start 7 s apart)."""
    return [
        Customer("pro", 5, "50", ["starter", "pro", "beast"], starves=False),
        Customer("starter", 4, "5", ["starter", "starter"], starves=False),
        # these run out mid-race: free minutes only, credit only, and both
        Customer("free", 3, "0", ["starter"], starves=True),
        Customer("pro", 0, "1.00", ["starter", "starter"], starves=True),
        Customer("starter", 2, "0.60", ["starter", "starter"], starves=True),
    ]


@pytest.fixture
def race_state(db: Database, database_url: str, tmp_path: Path, clock: FakeClock) -> AppState:
    settings = Settings(
        home=tmp_path,
        database_url=database_url,
        secret_key=TEST_SECRET,
        providers="demo",
        demo_provision_seconds=0,
        demo_capacity=20,
        free_minutes=0,
    )
    return AppState.build(settings, clock=clock, db=db)


async def _open_sessions(
    state: AppState, clock: FakeClock, customers: list[Customer] | None = None
) -> list[Customer]:
    """Real users with real active sessions, started a few seconds apart; each with the
    monthly budget asked for."""
    customers = customers or _customers()
    for number, customer in enumerate(customers):
        async with state.db.transaction() as tx:
            user = await accounts.create_user(
                tx,
                email=f"racer{number}@example.com",
                password=PASSWORD,
                plan=customer.plan,
                free_minutes=customer.free_minutes,
                now=clock.now(),
            )
            if customer.credit_micros:
                await accounts.grant_credits(
                    tx, user, customer.credit_micros, now=clock.now(), granted_by="test"
                )
            if customer.budget_usd is not None:
                await budget.set_budget(
                    tx, user.id, usd_to_micros(customer.budget_usd), now=clock.now()
                )
        customer.user = user
        for tier in customer.tiers:
            created = await sessions.create_session(
                state.db,
                state.orchestrator,
                user_id=user.id,
                tier_name=tier,
                model=None,
                max_minutes=None,
                now=clock.now(),
            )
            customer.session_ids.append(created.id)
    await state.jobs.housekeep()  # launch, and (no provisioning delay) ready
    for customer in customers:
        assert customer.user is not None
        for session_id in customer.session_ids:
            await sessions.start_session(
                state.db, session_id=session_id, user=customer.user, now=clock.now()
            )
            clock.advance(7)
    return customers


def _race(database_url: str, tmp_path: Path, schedules: list[list[int]]) -> int:
    """Run one worker process per schedule, all released at once; minutes they charged."""
    go = tmp_path / "go"
    workers = []
    for number, nows in enumerate(schedules):
        ready = tmp_path / f"ready{number}"
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                database_url,
                str(ready),
                str(go),
                ",".join(map(str, nows)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        workers.append((process, ready))
    deadline = time.monotonic() + 30
    while not all(ready.exists() for _, ready in workers):
        assert all(p.poll() is None for p, _ in workers), [p.communicate() for p, _ in workers]
        assert time.monotonic() < deadline, "the workers did not get ready"
        time.sleep(0.01)
    go.touch()
    charged = 0
    for process, _ in workers:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        charged += int(out.strip())
    return charged


async def _check_ledger(db: Database) -> None:
    """No minute twice; minutes 1..n per session; every balance is the sum of its entries."""
    async with db.transaction() as tx:
        doubled = (
            await tx.execute(
                text(
                    "SELECT session_id, minute, COUNT(*) FROM ledger_entries "
                    "WHERE kind = 'session_minute' GROUP BY session_id, minute HAVING COUNT(*) > 1"
                )
            )
        ).all()
        assert doubled == []
        minutes = (
            await tx.execute(
                text(
                    "SELECT s.id, s.charged_minutes, COUNT(e.id), MIN(e.minute), MAX(e.minute) "
                    "FROM gpu_sessions s LEFT JOIN ledger_entries e "
                    "ON e.session_id = s.id AND e.kind = 'session_minute' GROUP BY s.id"
                )
            )
        ).all()
        for session_id, charged, count, lowest, highest in minutes:
            assert count == charged, session_id
            if charged:
                assert (lowest, highest) == (1, charged), session_id
        drift = (
            await tx.execute(
                text(
                    "SELECT a.name, a.balance, COALESCE((SELECT SUM(e.amount) "
                    "FROM ledger_entries e WHERE e.credit_account_id = a.id), 0) "
                    "- COALESCE((SELECT SUM(e.amount) "
                    "FROM ledger_entries e WHERE e.debit_account_id = a.id), 0) "
                    "FROM ledger_accounts a"
                )
            )
        ).all()
        assert [row for row in drift if row[1] != row[2]] == []
        negative = await tx.scalar(
            text("SELECT COUNT(*) FROM ledger_accounts WHERE user_id IS NOT NULL AND balance < 0")
        )
        assert negative == 0


async def _check_customers(db: Database, customers: list[Customer], *, now_ms: int) -> None:
    """Funded sessions charged ceil(active / 60 s); the others got what their owner could pay."""
    async with db.transaction() as tx:
        for customer in customers:
            assert customer.user is not None
            rows = list(
                await tx.scalars(select(GpuSession).where(GpuSession.user_id == customer.user.id))
            )
            funds = await ledger.balances(tx, customer.user.id)
            due = {s.id: minutes_started(active_ms(s, from_ms(now_ms))) for s in rows}
            charged = {s.id: s.charged_minutes for s in rows}
            free_used = min(customer.free_minutes, sum(charged.values()))
            assert funds.free_minutes == customer.free_minutes - free_used, customer
            assert 0 <= funds.credit_micros <= customer.credit_micros, customer
            if not customer.starves:
                assert charged == due, customer  # every started minute, once
                continue
            (price,) = {s.price_micros_per_minute for s in rows}
            affordable = minutes_affordable(
                free_minutes=customer.free_minutes,
                balance_micros=customer.credit_micros,
                price_micros=price,
            )
            assert sum(due.values()) > affordable, "the race should outrun this customer"
            # everything the money could buy, not one minute more, and nothing not yet due
            assert sum(charged.values()) == affordable, customer
            assert all(charged[s] <= due[s] for s in due), customer
            spent = customer.credit_micros - funds.credit_micros
            assert spent == (affordable - free_used) * price, customer
            assert funds.free_minutes == 0 and funds.credit_micros < price, customer


async def _finish_and_check(state: AppState, customers: list[Customer], *, now_ms: int) -> None:
    """A normal job pass afterwards charges nothing new and stops the starved sessions at
    their paid time; then charged == ceil(active / 60 s) for every session."""
    result = await run_metering_pass(state.db, state.providers, now=from_ms(now_ms))
    assert result.minutes_charged == 0
    starving = {s for c in customers if c.starves for s in c.session_ids}
    assert result.starved_session_ids and set(result.starved_session_ids) <= starving
    await _check_ledger(state.db)
    async with state.db.transaction() as tx:
        for session in await tx.scalars(select(GpuSession)):
            seen = active_ms(session, from_ms(now_ms))
            assert session.charged_minutes == minutes_started(seen), session.id
            if session.id in result.starved_session_ids:
                assert (session.status, session.end_reason) == (
                    "terminated",
                    "insufficient_credits",
                )
                assert seen == session.charged_minutes * MS_PER_MINUTE  # ends at its paid time
            else:
                assert session.status == "active"


async def test_two_processes_metering_at_the_same_now_charge_each_minute_once(
    race_state: AppState, clock: FakeClock, database_url: str, tmp_path: Path
) -> None:
    customers = await _open_sessions(race_state, clock)
    now_ms = to_ms(clock.now() + timedelta(minutes=4, seconds=20))
    charged = _race(database_url, tmp_path, [[now_ms] * 15, [now_ms] * 15])

    await _check_ledger(race_state.db)
    async with race_state.db.transaction() as tx:
        entries = await tx.scalar(
            text("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'session_minute'")
        )
    assert charged == entries > 0
    await _check_customers(race_state.db, customers, now_ms=now_ms)
    await _finish_and_check(race_state, customers, now_ms=now_ms)


async def test_two_processes_metering_at_different_nows_charge_each_minute_once(
    race_state: AppState, clock: FakeClock, database_url: str, tmp_path: Path
) -> None:
    customers = await _open_sessions(race_state, clock)
    base = to_ms(clock.now())
    # interleaved times, each process moving forward on its own; one also steps back once
    first = [base + 5_000 + 40_000 * i for i in range(9)]
    second = [base + 25_000 + 40_000 * i for i in range(9)]
    second.insert(4, base + 1_000)
    charged = _race(database_url, tmp_path, [first, second])

    now_ms = max(first + second)
    await _check_ledger(race_state.db)
    async with race_state.db.transaction() as tx:
        entries = await tx.scalar(
            text("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'session_minute'")
        )
    assert charged == entries > 0
    await _check_customers(race_state.db, customers, now_ms=now_ms)
    await _finish_and_check(race_state, customers, now_ms=now_ms)


async def test_two_processes_metering_at_once_never_charge_beyond_a_budget(
    race_state: AppState, clock: FakeClock, database_url: str, tmp_path: Path
) -> None:
    customers = [
        # all starter: a $0.45 budget pays 3 minutes after the 2 free ones, not one more
        Customer("starter", 2, "5", ["starter", "starter"], starves=True, budget_usd="0.45"),
        # mixed prices: whatever fits under $3.00, in minute order
        Customer("pro", 0, "50", ["starter", "pro", "beast"], starves=True, budget_usd="3"),
        Customer("pro", 0, "50", ["starter", "pro"], starves=False, budget_usd="100"),
    ]
    customers = await _open_sessions(race_state, clock, customers)
    base = to_ms(clock.now())
    first = [base + 5_000 + 40_000 * i for i in range(9)]
    second = [base + 25_000 + 40_000 * i for i in range(9)]
    _race(database_url, tmp_path, [first, second])
    now_ms = max(first + second)

    await _check_ledger(race_state.db)
    month = month_of(from_ms(now_ms))
    async with race_state.db.transaction() as tx:
        for customer in customers:
            assert customer.user is not None and customer.budget_usd is not None
            row = await tx.get(MonthlySpend, (customer.user.id, month))
            assert row is not None
            paid = sum(
                s.credit_charged_micros
                for s in await tx.scalars(
                    select(GpuSession).where(GpuSession.user_id == customer.user.id)
                )
            )
            assert row.spent_micros == paid <= usd_to_micros(customer.budget_usd), customer
            assert (row.stopped_at_micros is not None) is customer.starves, customer
    cheap = customers[0]
    assert cheap.user is not None
    async with race_state.db.transaction() as tx:
        charged = await tx.scalar(
            select(func.sum(GpuSession.charged_minutes)).where(GpuSession.user_id == cheap.user.id)
        )
    assert charged == 2 + 3  # the free minutes, then exactly what the budget pays

    # A normal pass afterwards ends every session of a user at the budget, at its paid time.
    result = await run_metering_pass(race_state.db, race_state.providers, now=from_ms(now_ms))
    assert result.minutes_charged == 0
    async with race_state.db.transaction() as tx:
        for customer in customers:
            assert customer.user is not None
            for session in await tx.scalars(
                select(GpuSession).where(GpuSession.user_id == customer.user.id)
            ):
                seen = active_ms(session, from_ms(now_ms))
                assert session.charged_minutes == minutes_started(seen), session.id
                if customer.starves:
                    assert (session.status, session.end_reason) == ("terminated", "budget")
                    assert seen <= session.charged_minutes * MS_PER_MINUTE
                else:
                    assert session.status == "active"
