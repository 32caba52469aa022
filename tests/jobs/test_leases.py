"""Leases keep two processes off the same session's provider calls, and one reconciler round at a
time. A test holds a lease the way another worker would, then runs the job here."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select, text

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.leases import job_lease, lease, lease_holder, session_lease
from sizzle.db.models import DemoInstance, GpuSession, LaunchAttempt
from sizzle.domain.tiers import TIERS
from sizzle.jobs.provisioning import LAUNCH_DEADLINE
from sizzle.services.sessions import release_session
from sizzle.state import AppState
from tests.helpers import create_session, get_session, launch_ready_session, sign_up


async def test_a_lease_is_held_by_one_holder_at_a_time(db: Database) -> None:
    async with lease_holder(db) as mine, lease_holder(db) as theirs:
        assert await mine.try_take("session:x")
        assert not await theirs.try_take("session:x")
        assert await theirs.try_take("session:y")
        await mine.give_back("session:x")
        assert await theirs.try_take("session:x")
    async with lease(db, "session:x") as taken:  # given back when the holders ended
        assert taken


async def test_waiting_for_a_lease_gives_up_after_the_timeout(db: Database) -> None:
    async with lease(db, "session:x") as held, lease(db, "session:x", wait_seconds=0.1) as taken:
        assert (held, taken) == (True, False)


async def _provisioning_without_instance(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> str:
    """A session claimed by a launcher that has not recorded an instance yet."""
    session_id = (await create_session(client, auth=await sign_up(client)))["id"]
    async with db.transaction() as tx:
        (await tx.get(GpuSession, session_id)).status = "provisioning"
    clock.advance(LAUNCH_DEADLINE.total_seconds() + 60)
    return session_id


async def test_a_launch_in_flight_elsewhere_is_not_failed_for_its_age(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    session_id = await _provisioning_without_instance(client, db, clock)
    async with lease(db, session_lease(session_id)):  # another worker is launching it
        await state.jobs.housekeep()
    async with db.read() as tx:
        assert (await tx.get(GpuSession, session_id)).status == "provisioning"


async def test_a_launch_whose_launcher_died_fails_after_the_deadline(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    session_id = await _provisioning_without_instance(client, db, clock)
    await state.jobs.housekeep()  # nobody holds its lease
    async with db.read() as tx:
        assert (await tx.get(GpuSession, session_id)).status == "failed"


async def test_a_launch_that_died_is_left_to_the_worker_checking_it(
    client: httpx.AsyncClient, state: AppState, db: Database
) -> None:
    session_id = (await create_session(client, auth=await sign_up(client)))["id"]
    await state.jobs.run_once()
    async with db.transaction() as tx:
        instance_id = (await tx.get(GpuSession, session_id)).instance_id
        (await tx.get(DemoInstance, instance_id)).state = "terminated"  # it died while starting
    async with lease(db, session_lease(session_id)):  # another worker is checking it
        await state.jobs.housekeep()
        async with db.read() as tx:
            session = await tx.get(GpuSession, session_id)
            assert (session.status, session.instance_id) == ("provisioning", instance_id)
    await state.jobs.housekeep()  # now this worker: the demo has no other offer to fail over to
    async with db.read() as tx:
        outcomes = list(
            await tx.scalars(
                select(LaunchAttempt.outcome).where(LaunchAttempt.session_id == session_id)
            )
        )
        assert (await tx.get(GpuSession, session_id)).status == "failed"
    assert outcomes == ["failed_to_start"]


async def test_a_jobs_release_leaves_a_session_leased_elsewhere(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = await launch_ready_session(client, state, clock, auth=auth)
    async with db.transaction() as tx:
        (await tx.get(GpuSession, session_id)).status = "stopping"
    async with lease(db, session_lease(session_id)):
        await release_session(db, state.providers, session_id=session_id, now=clock.now())
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "stopping"
    await state.jobs.housekeep()  # the reaper finishes it once the lease is free
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == ("terminated")


async def test_a_reconciler_round_is_skipped_while_another_runs(state: AppState) -> None:
    demo = state.providers["demo"]
    (offer,) = await demo.offers(TIERS["starter"])
    orphan = await demo.provision(offer, session_id="nosuchsession", model=None)
    async with lease(state.db, job_lease("reconcile")):
        assert (await state.jobs.reconcile_now()).orphans_destroyed == []
    assert (await state.jobs.reconcile_now()).orphans_destroyed == [f"demo:{orphan}"]
    assert (await state.jobs.reconcile_now()).orphans_destroyed == []  # counted once


@pytest.mark.postgres_only
async def test_waiters_on_a_busy_lease_leave_the_pool_to_its_holder(db: Database) -> None:
    """More waiters than the pool has connections: the holder can still run its transaction."""
    waiters_done = asyncio.Event()

    async def wait_for_it() -> bool:
        async with lease(db, "session:busy", wait_seconds=10) as taken:
            await waiters_done.wait()
            return taken

    async with lease(db, "session:busy") as held:
        assert held
        waiters = [asyncio.create_task(wait_for_it()) for _ in range(25)]
        await asyncio.sleep(0.3)  # every waiter has tried at least once by now
        async with asyncio.timeout(3):  # the pool holds 20: a waiter pinning one would starve it
            async with db.transaction() as tx:
                assert await tx.scalar(text("SELECT 1")) == 1
    waiters_done.set()
    assert sum(await asyncio.gather(*waiters)) == 25  # each took it in turn
