"""A launch that never becomes ready is destroyed and the next offer tried."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import LaunchAttempt
from sizzle.providers.base import Instance, InstanceState
from sizzle.services.breaker import ProviderStatus
from sizzle.state import AppState
from tests.helpers import get_session, sign_up
from tests.services.test_orchestrator import ScriptedProvider


class StuckProvider(ScriptedProvider):
    """As cheap as the demo (and first by name at an equal price), but its instances never
    finish starting."""

    def __init__(self) -> None:
        super().__init__("a-stuck", [0])
        self.terminated: list[str] = []

    async def status(self, external_id):  # type: ignore[no-untyped-def]
        if external_id in self.terminated:
            return None
        return Instance(external_id, "sizzle-x", InstanceState.PROVISIONING)

    async def terminate(self, external_id):  # type: ignore[no-untyped-def]
        self.terminated.append(external_id)


async def test_an_instance_not_ready_in_time_is_destroyed_and_the_next_offer_tried(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    stuck = StuckProvider()
    state.providers["a-stuck"] = stuck
    state.orchestrator.providers["a-stuck"] = stuck
    state.orchestrator.status["a-stuck"] = ProviderStatus("a-stuck")
    auth = await sign_up(client)
    session_id = (
        await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=auth)
    ).json()["id"]

    await state.jobs.housekeep()
    assert stuck.provisioned == ["a-stuck-0"]
    clock.advance(state.settings.provision_timeout_seconds + 1)
    await state.jobs.housekeep()  # timed out: destroyed, relaunched on the demo
    assert stuck.terminated == ["instance-a-stuck-0"]
    clock.advance(state.settings.demo_provision_seconds)
    await state.jobs.housekeep()

    body = await get_session(client, auth=auth, session_id=session_id)
    assert body["status"] == "ready"
    async with db.transaction() as tx:
        attempts = (
            await tx.execute(
                select(LaunchAttempt.provider, LaunchAttempt.outcome).order_by(LaunchAttempt.id)
            )
        ).all()
    assert [tuple(a) for a in attempts] == [("a-stuck", "failed_to_start"), ("demo", "launched")]
