"""The reconciler against the demo provider: orphans destroyed, foreign instances untouched,
a vanished instance fails its session and stops billing where it was last seen."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import DemoInstance, GpuSession, LedgerEntry
from sizzle.domain.tiers import TIERS
from sizzle.state import AppState
from tests.helpers import get_session, launch_active_session, me, run_for, sign_up


async def _plant_demo_instance(state: AppState, *, name: str) -> str:
    demo = state.providers["demo"]
    (offer,) = await demo.offers(TIERS["starter"])
    external_id = await demo.provision(offer, session_id="ignored", model=None)
    async with state.db.transaction() as tx:
        (await tx.get(DemoInstance, external_id)).name = name
    return external_id


async def test_an_orphan_sizzle_instance_is_destroyed(state: AppState) -> None:
    orphan = await _plant_demo_instance(state, name="sizzle-nosuchsession")
    report = await state.jobs.reconcile_now()
    assert report.orphans_destroyed == [f"demo:{orphan}"]
    assert await state.providers["demo"].status(orphan) is None


async def test_a_foreign_instance_is_left_alone(state: AppState) -> None:
    foreign = await _plant_demo_instance(state, name="my-own-box")
    report = await state.jobs.reconcile_now()
    assert report.orphans_destroyed == []
    assert await state.providers["demo"].status(foreign) is not None


async def test_a_live_sessions_instance_is_kept(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    report = await state.jobs.reconcile_now()
    assert (report.orphans_destroyed, report.sessions_lost) == ([], [])
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "active"


async def test_an_instance_of_an_ended_session_is_destroyed(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    async with db.transaction() as tx:  # the release failed half-way: the GPU is still there
        instance_id = (await tx.get(GpuSession, session_id)).instance_id
        (await tx.get(GpuSession, session_id)).status = "terminated"
    report = await state.jobs.reconcile_now()
    assert report.orphans_destroyed == [f"demo:{instance_id}"]


async def test_a_vanished_instance_fails_its_session_after_two_checks_and_billing_stops(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=70)
    await state.jobs.reconcile_now()  # seen running at 70 s: 2 minutes owed
    async with db.transaction() as tx:
        instance_id = (await tx.get(GpuSession, session_id)).instance_id
    await state.providers["demo"].terminate(instance_id)  # gone behind our back

    await run_for(state, clock, seconds=60)  # metering goes on: minute 3 is charged
    assert (await state.jobs.reconcile_now()).sessions_lost == []  # one miss is not enough
    await run_for(state, clock, seconds=60)
    assert (await state.jobs.reconcile_now()).sessions_lost == [session_id]

    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["end_reason"]) == ("failed", "provider_lost")
    assert (body["charged_minutes"], body["active_seconds"]) == (2, 70)
    assert (await me(client, auth=auth))["free_minutes"] == 3  # minutes 3 and 4 refunded
    async with db.transaction() as tx:
        refunds = list(
            await tx.scalars(
                select(LedgerEntry.minute).where(LedgerEntry.kind == "session_minute_refund")
            )
        )
    assert sorted(refunds) == [3, 4]
    clock.advance(timedelta(minutes=10).total_seconds())
    await state.jobs.meter()
    assert (await get_session(client, auth=auth, session_id=session_id))["charged_minutes"] == 2


async def test_a_provider_that_cannot_list_is_skipped_not_counted_as_missing(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, monkeypatch
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)

    async def broken() -> list:
        raise RuntimeError("provider API down")

    monkeypatch.setattr(state.providers["demo"], "list_instances", broken)
    for _ in range(3):
        report = await state.jobs.reconcile_now()
        assert report.providers_skipped == ["demo"]
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "active"
