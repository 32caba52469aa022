"""What paid a session's minutes, in the session JSON: free minutes, Sizzle Lab minutes and
credit apart, the credit part equal to the ledger's credit charges, never free time as dollars."""

from __future__ import annotations

import importlib

import httpx
from sqlalchemy import case, func, select, text

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, LedgerEntry
from sizzle.services import ledger
from sizzle.state import AppState
from tests.helpers import (
    act,
    get_session,
    launch_active_session,
    me,
    run_for,
    signed_in_user,
)

MIGRATION = importlib.import_module("sizzle.db.migrations.versions.0015_session_charges_split")


async def credit_charged(db: Database, session_id: str) -> int:
    """The ledger's word: the session's charges to its owner's credit, less refunds."""
    async with db.read() as tx:
        user_id = (await tx.get(GpuSession, session_id)).user_id
        credit = await ledger.account_id(tx, ledger.credit_account_name(user_id))
        signed = case(
            (LedgerEntry.debit_account_id == credit, LedgerEntry.amount), else_=-LedgerEntry.amount
        )
        total = await tx.scalar(
            select(func.coalesce(func.sum(signed), 0)).where(
                LedgerEntry.session_id == session_id,
                (LedgerEntry.debit_account_id == credit)
                | (LedgerEntry.credit_account_id == credit),
            )
        )
    return int(total or 0)


def split(body: dict) -> tuple[int, int, int, int, str]:
    return (
        body["free_minutes_used"],
        body["plan_minutes_used"],
        body["credit_minutes"],
        body["credit_charged_micros"],
        body["charged_usd"],
    )


async def test_a_session_its_free_minutes_paid_charged_nothing(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=5)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=125)
    body = (await act(client, auth=auth, session_id=session_id, action="stop")).json()
    assert body["charged_minutes"] == 3
    assert split(body) == (3, 0, 0, 0, "0.00")
    assert body["charges_text"] == "3 free minutes used · $0.00 charged"
    assert body["cost_usd"] == "0.45"  # the list price, kept for old clients
    assert await credit_charged(db, session_id) == 0


async def test_free_minutes_then_credit_are_told_apart(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=1, credit_usd="1")
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=150)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert split(body) == (1, 0, 2, 300_000, "0.30")
    assert body["charges_text"] == "1 free minute used · $0.30 charged for 2 minutes"
    assert await credit_charged(db, session_id) == 300_000


async def test_sizzle_lab_minutes_come_between_free_minutes_and_credit(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=1, credit_usd="1")
    user_id = (await me(client, auth=auth))["id"]
    async with db.transaction() as tx:
        await ledger.grant_included_minutes(
            tx, user_id, 2, key="test:lab", now=clock.now(), memo="a month of Lab"
        )
    session_id = await launch_active_session(client, state, clock, auth=auth)  # starter: Lab
    await run_for(state, clock, seconds=230)
    body = await get_session(client, auth=auth, session_id=session_id)
    assert split(body) == (1, 2, 1, 150_000, "0.15")
    assert body["charges_text"] == (
        "1 free minute used · 2 Sizzle Lab minutes used · $0.15 charged for 1 minute"
    )
    assert await credit_charged(db, session_id) == 150_000


async def test_minutes_given_back_leave_the_split(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=2, credit_usd="1")
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=70)
    await state.jobs.reconcile_now()  # seen running at 70 s: 2 minutes owed, both free
    async with db.transaction() as tx:
        instance_id = (await tx.get(GpuSession, session_id)).instance_id
    await state.providers["demo"].terminate(instance_id)
    await run_for(state, clock, seconds=60)  # minute 3 is charged to credit
    assert split(await get_session(client, auth=auth, session_id=session_id))[3] == 150_000
    await state.jobs.reconcile_now()
    await run_for(state, clock, seconds=60)
    assert (await state.jobs.reconcile_now()).sessions_lost == [session_id]
    body = await get_session(client, auth=auth, session_id=session_id)
    assert body["charged_minutes"] == 2
    assert split(body) == (2, 0, 0, 0, "0.00")  # minutes 3 and 4 went back to the credit
    assert await credit_charged(db, session_id) == 0


async def test_the_migration_reads_the_split_of_existing_sessions_from_the_ledger(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await signed_in_user(client, db, clock=clock, free_minutes=1, credit_usd="1")
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=150)
    await act(client, auth=auth, session_id=session_id, action="stop")
    before = split(await get_session(client, auth=auth, session_id=session_id))
    async with db.transaction() as tx:
        await tx.execute(
            text(
                "UPDATE gpu_sessions SET free_minutes_used = 0, plan_minutes_used = 0, "
                "credit_charged_micros = 0"
            )
        )
        await tx.execute(text(MIGRATION.BACKFILL))
    after = split(await get_session(client, auth=auth, session_id=session_id))
    assert before == after == (1, 0, 2, 300_000, "0.30")
