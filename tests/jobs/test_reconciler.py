"""The reconciler against the demo provider: orphans destroyed, foreign instances untouched,
a vanished instance fails its session and stops billing where it was last seen, and a session
whose GPU runs while paused, or stopped while active, is made to agree and billed to the truth."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.leases import job_lease, lease, session_lease
from sizzle.db.models import DemoInstance, GpuSession, LedgerEntry
from sizzle.domain.tiers import TIERS
from sizzle.errors import ProviderUnavailable
from sizzle.jobs.reconciler import STATE_GRACE
from sizzle.providers.base import InstanceState
from sizzle.state import AppState
from tests.helpers import act, get_session, launch_active_session, me, run_for, sign_up


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


# --- a provider that cannot be listed ----------------------------------------------------------


def _listing_fails(state: AppState, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    async def broken() -> list:
        raise error

    monkeypatch.setattr(state.providers["demo"], "list_instances", broken)


async def test_failed_listings_are_counted_in_a_row_with_the_last_good_one(
    state: AppState, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await state.jobs.reconcile_now()
    listed_at = clock.now()
    _listing_fails(state, monkeypatch, ProviderUnavailable("demo: HTTP 401 bad key"))
    for rounds in (1, 2, 3):
        clock.advance(60)
        report = await state.jobs.reconcile_now()
        demo = report.listings["demo"]
        assert (demo.failed_rounds, demo.last_listed_at) == (rounds, listed_at)
    assert demo.failing_since == listed_at + timedelta(seconds=60)
    assert demo.last_error == "demo: HTTP 401 bad key"


async def test_a_listing_that_works_ends_the_streak(
    state: AppState, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        _listing_fails(state, patched, ProviderUnavailable("demo: HTTP 503"))
        for _ in range(4):
            await state.jobs.reconcile_now()
    clock.advance(60)
    demo = (await state.jobs.reconcile_now()).listings["demo"]
    assert (demo.failed_rounds, demo.failing_since, demo.last_listed_at) == (0, None, clock.now())


async def test_a_raw_error_is_recorded_by_its_type_only(
    state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transport error can quote a URL with a key in it: only the log line has its text."""
    _listing_fails(state, monkeypatch, RuntimeError("GET https://x/?api_key=s3cret failed"))
    demo = (await state.jobs.reconcile_now()).listings["demo"]
    assert demo.last_error is not None and demo.last_error.startswith("RuntimeError")
    assert "s3cret" not in demo.last_error


async def test_the_gauges_count_blind_rounds_and_the_last_listing(
    state: AppState, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = state.metrics.registry

    def gauges() -> tuple[float | None, float | None]:
        return (
            registry.get_sample_value("sizzle_reconciler_blind_rounds", {"provider": "demo"}),
            registry.get_sample_value(
                "sizzle_reconciler_last_listed_timestamp_seconds", {"provider": "demo"}
            ),
        )

    await state.jobs.reconcile_now()
    listed_at = clock.now().timestamp()
    assert gauges() == (0, listed_at)
    with monkeypatch.context() as patched:
        _listing_fails(state, patched, ProviderUnavailable("demo: HTTP 503"))
        for _ in range(3):
            clock.advance(60)
            await state.jobs.reconcile_now()
    assert gauges() == (3, listed_at)
    clock.advance(60)
    await state.jobs.reconcile_now()
    assert gauges() == (0, clock.now().timestamp())


async def test_a_process_whose_turn_is_taken_reports_the_recorded_streak(
    state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    _listing_fails(state, monkeypatch, ProviderUnavailable("demo: HTTP 503"))
    await state.jobs.reconcile_now()
    async with lease(state.db, job_lease("reconcile")):
        report = await state.jobs.reconcile_now()
    assert report.providers_skipped == []
    assert report.listings["demo"].failed_rounds == 1


# --- a session and its GPU that disagree -------------------------------------------------------


async def _instance_of(db: Database, session_id: str) -> str:
    async with db.read() as tx:
        return (await tx.get(GpuSession, session_id)).instance_id


async def _refunded_minutes(db: Database) -> list[int]:
    async with db.read() as tx:
        return sorted(
            await tx.scalars(
                select(LedgerEntry.minute).where(LedgerEntry.kind == "session_minute_refund")
            )
        )


async def test_a_paused_sessions_running_gpu_is_stopped_after_the_grace(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=70)
    assert (await act(client, auth=auth, session_id=session_id, action="pause")).status_code == 200
    demo = state.providers["demo"]
    instance_id = await _instance_of(db, session_id)
    await demo.start(instance_id)  # running again behind Sizzle's back

    assert (await state.jobs.reconcile_now()).instances_stopped == []  # the provider may lag
    clock.advance(STATE_GRACE.total_seconds())
    assert (await state.jobs.reconcile_now()).instances_stopped == [session_id]

    assert (await demo.status(instance_id)).state is InstanceState.STOPPED
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["active_seconds"], body["charged_minutes"]) == ("paused", 70, 2)


async def test_an_active_session_whose_gpu_stopped_is_paused_and_billed_to_its_last_sighting(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=70)
    await state.jobs.reconcile_now()  # seen running at 70 s
    await state.providers["demo"].stop(await _instance_of(db, session_id))  # behind our back
    await run_for(state, clock, seconds=130)  # metering goes on: minutes 3 and 4 charged

    assert (await state.jobs.reconcile_now()).sessions_paused == [session_id]
    body = await get_session(client, auth=auth, session_id=session_id)
    assert (body["status"], body["active_seconds"], body["charged_minutes"]) == ("paused", 70, 4)
    await run_for(state, clock, seconds=60)
    assert (await get_session(client, auth=auth, session_id=session_id))["charged_minutes"] == 4

    stopped = await act(client, auth=auth, session_id=session_id, action="stop")
    assert (stopped.json()["charged_minutes"], stopped.json()["active_seconds"]) == (2, 70)
    assert await _refunded_minutes(db) == [3, 4]  # paid in advance, never used
    assert (await me(client, auth=auth))["free_minutes"] == 3


async def test_a_gpu_stopped_right_after_a_resume_bills_nothing_after_the_resume(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    """What the pause/resume race used to leave: active, its GPU stopped just after resuming."""
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=70)
    await state.jobs.reconcile_now()  # seen running at 70 s
    assert (await act(client, auth=auth, session_id=session_id, action="pause")).status_code == 200
    clock.advance(30)
    assert (await act(client, auth=auth, session_id=session_id, action="resume")).status_code == 200
    await state.providers["demo"].stop(await _instance_of(db, session_id))
    await run_for(state, clock, seconds=180)  # billed for a stopped GPU: minutes 3 to 5

    assert (await state.jobs.reconcile_now()).sessions_paused == [session_id]
    stopped = await act(client, auth=auth, session_id=session_id, action="stop")
    assert (stopped.json()["charged_minutes"], stopped.json()["active_seconds"]) == (2, 70)
    assert await _refunded_minutes(db) == [3, 4, 5]


async def test_minutes_paid_beyond_the_sighting_count_toward_the_next_ones(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=70)
    await state.jobs.reconcile_now()
    await state.providers["demo"].stop(await _instance_of(db, session_id))
    await run_for(state, clock, seconds=130)
    assert (await state.jobs.reconcile_now()).sessions_paused == [session_id]  # 70 s, 4 paid

    assert (await act(client, auth=auth, session_id=session_id, action="resume")).status_code == 200
    await run_for(state, clock, seconds=100)  # 170 s: within the 4 minutes paid
    assert (await get_session(client, auth=auth, session_id=session_id))["charged_minutes"] == 4
    await run_for(state, clock, seconds=80)  # 250 s: minute 5
    stopped = (await act(client, auth=auth, session_id=session_id, action="stop")).json()
    assert (stopped["charged_minutes"], stopped["active_seconds"]) == (5, 250)
    assert await _refunded_minutes(db) == []
    async with db.read() as tx:
        charged = sorted(
            await tx.scalars(
                select(LedgerEntry.minute).where(
                    LedgerEntry.session_id == session_id, LedgerEntry.kind == "session_minute"
                )
            )
        )
    assert charged == [1, 2, 3, 4, 5]


async def test_a_disagreement_is_left_while_the_session_is_leased_elsewhere(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await state.providers["demo"].stop(await _instance_of(db, session_id))
    await run_for(state, clock, seconds=130)
    async with lease(db, session_lease(session_id)):  # a user's action in flight elsewhere
        assert (await state.jobs.reconcile_now()).sessions_paused == []
    assert (await state.jobs.reconcile_now()).sessions_paused == [session_id]


async def test_a_pause_whose_gpu_stop_fails_is_paused_and_the_reconciler_stops_the_gpu(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    demo = state.providers["demo"]

    async def unreachable(_external_id: str) -> None:
        raise ProviderUnavailable("demo: timed out (ReadTimeout)")

    with monkeypatch.context() as patched:
        patched.setattr(demo, "stop", unreachable)
        paused = await act(client, auth=auth, session_id=session_id, action="pause")
    assert (paused.status_code, paused.json()["status"]) == (200, "paused")  # billing stopped
    instance_id = await _instance_of(db, session_id)
    assert (await demo.status(instance_id)).state is InstanceState.RUNNING

    clock.advance(STATE_GRACE.total_seconds())
    assert (await state.jobs.reconcile_now()).instances_stopped == [session_id]
    assert (await demo.status(instance_id)).state is InstanceState.STOPPED
