"""Pause and resume hold the session's lease across their provider call, so a second action on
the session waits for the first to finish at the provider: status and GPU always agree.

Each race is staged here: the provider's call is held open on an event while the other action
is sent, as another replica would send it.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.leases import lease, session_lease
from sizzle.db.models import GpuSession
from sizzle.providers.base import InstanceState
from sizzle.services import sessions
from sizzle.state import AppState
from tests.helpers import act, assert_error, get_session, launch_active_session, sign_up


class HeldCall:
    """Wraps one provider method: each call says it began, then waits to be let through."""

    def __init__(self, method: object) -> None:
        self.method = method
        self.began = asyncio.Event()
        self.go = asyncio.Event()

    async def __call__(self, external_id: str) -> None:
        self.began.set()
        await self.go.wait()
        await self.method(external_id)  # type: ignore[operator]


async def _instance_state(state: AppState, db: Database, session_id: str) -> InstanceState:
    async with db.read() as tx:
        instance_id = (await tx.get(GpuSession, session_id)).instance_id
    instance = await state.providers["demo"].status(instance_id)
    assert instance is not None
    return instance.state


async def _until_waiting(task: asyncio.Task[httpx.Response]) -> None:
    """Let `task` run until it waits on something (the lease), which it must not get past."""
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert not task.done(), task.result().text


async def test_a_resume_waits_for_the_pause_still_stopping_the_gpu(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    demo = state.providers["demo"]
    stop = HeldCall(demo.stop)
    monkeypatch.setattr(demo, "stop", stop)

    pausing = asyncio.create_task(act(client, auth=auth, session_id=session_id, action="pause"))
    await stop.began.wait()  # paused in the database, the GPU not stopped yet
    resuming = asyncio.create_task(act(client, auth=auth, session_id=session_id, action="resume"))
    await _until_waiting(resuming)
    stop.go.set()
    paused, resumed = await pausing, await resuming

    assert (paused.status_code, resumed.status_code) == (200, 200)
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "active"
    assert await _instance_state(state, db, session_id) is InstanceState.RUNNING


async def test_a_pause_waits_for_the_resume_still_starting_the_gpu(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    assert (await act(client, auth=auth, session_id=session_id, action="pause")).status_code == 200
    demo = state.providers["demo"]
    start = HeldCall(demo.start)
    monkeypatch.setattr(demo, "start", start)

    resuming = asyncio.create_task(act(client, auth=auth, session_id=session_id, action="resume"))
    await start.began.wait()  # the GPU starting, the session still paused in the database
    pausing = asyncio.create_task(act(client, auth=auth, session_id=session_id, action="pause"))
    await _until_waiting(pausing)
    start.go.set()
    resumed, paused = await resuming, await pausing

    assert (resumed.status_code, paused.status_code) == (200, 200)
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "paused"
    assert await _instance_state(state, db, session_id) is InstanceState.STOPPED


async def test_a_stop_during_a_resume_releases_the_gpu_the_resume_started(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    assert (await act(client, auth=auth, session_id=session_id, action="pause")).status_code == 200
    demo = state.providers["demo"]
    start = HeldCall(demo.start)
    monkeypatch.setattr(demo, "start", start)

    resuming = asyncio.create_task(act(client, auth=auth, session_id=session_id, action="resume"))
    await start.began.wait()
    stopping = asyncio.create_task(act(client, auth=auth, session_id=session_id, action="stop"))
    await _until_waiting(stopping)  # stopping in the database; the release waits for the lease
    start.go.set()
    resumed, stopped = await resuming, await stopping

    assert_error(resumed, 409, "invalid_transition")
    assert stopped.json()["status"] == "terminated"
    async with db.read() as tx:
        instance_id = (await tx.get(GpuSession, session_id)).instance_id
    assert await demo.status(instance_id) is None


async def test_a_pause_that_cannot_get_the_lease_in_time_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = await sign_up(client)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    monkeypatch.setattr(sessions, "LEASE_WAIT_SECONDS", 0.1)
    async with lease(db, session_lease(session_id)) as held:  # another worker's step
        assert held
        response = await act(client, auth=auth, session_id=session_id, action="pause")
    assert_error(response, 409, "session_busy")
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "active"
    assert await _instance_state(state, db, session_id) is InstanceState.RUNNING


async def test_another_users_session_is_404_even_while_its_lease_is_taken(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session_id = await launch_active_session(client, state, clock, auth=await sign_up(client))
    monkeypatch.setattr(sessions, "LEASE_WAIT_SECONDS", 5)
    async with lease(db, session_lease(session_id)):
        response = await act(
            client, auth=await sign_up(client), session_id=session_id, action="pause"
        )
    assert_error(response, 404)
