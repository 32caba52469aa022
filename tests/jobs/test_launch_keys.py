"""Each session's SSH key pair: made at its first launch and handed to the provider, kept
across a failover (whose new instance pins its own host key), forgotten when it ends."""

from __future__ import annotations

import httpx

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import InstanceKey
from sizzle.providers.base import Boot
from sizzle.services.breaker import ProviderStatus
from sizzle.state import AppState
from sizzle.workload import keys
from tests.helpers import sign_up
from tests.jobs.test_failover import StuckProvider


async def _launch_on_stuck(
    client: httpx.AsyncClient, state: AppState
) -> tuple[StuckProvider, dict[str, str], str]:
    stuck = StuckProvider()
    for registry in (state.providers, state.orchestrator.providers):
        registry["a-stuck"] = stuck
    state.orchestrator.status["a-stuck"] = ProviderStatus("a-stuck")
    auth = await sign_up(client)
    made = await client.post(
        "/api/v1/sessions", json={"tier": "starter", "model": "llama3.1:8b"}, headers=auth
    )
    assert made.status_code == 201, made.text
    await state.jobs.housekeep()
    return stuck, auth, made.json()["id"]


async def test_the_provider_gets_the_sessions_public_key_and_model(
    client: httpx.AsyncClient, state: AppState, db: Database
) -> None:
    stuck, _, session_id = await _launch_on_stuck(client, state)
    async with db.transaction() as tx:
        stored = await tx.get(InstanceKey, session_id)
    assert stored is not None
    [boot] = stuck.boots
    assert isinstance(boot, Boot)
    assert boot.ssh_public_key == stored.public_key
    assert boot.ssh_public_key.startswith("ssh-ed25519 ")
    assert boot.model == "llama3.1:8b"
    assert "PRIVATE KEY" not in stored.sealed_private_key


async def test_a_failover_keeps_the_key_pair_and_unpins_the_old_instances_host_key(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    stuck, _, session_id = await _launch_on_stuck(client, state)
    async with db.transaction() as tx:
        await keys.pin_host_key(tx, session_id, "ssh-ed25519 AAAAold-instance")
        before = (await tx.get(InstanceKey, session_id)).public_key  # type: ignore[union-attr]
    clock.advance(state.settings.provision_timeout_seconds + 1)
    await state.jobs.housekeep()  # timed out: destroyed, relaunched on the demo
    assert stuck.terminated == ["instance-a-stuck-0"]
    async with db.transaction() as tx:
        after = await tx.get(InstanceKey, session_id)
    assert after is not None and after.public_key == before
    assert after.host_key is None


async def test_the_key_pair_is_forgotten_when_the_session_ends(
    client: httpx.AsyncClient, state: AppState, db: Database
) -> None:
    _, auth, session_id = await _launch_on_stuck(client, state)
    stopped = await client.post(f"/api/v1/sessions/{session_id}/stop", headers=auth)
    assert stopped.status_code == 200, stopped.text
    async with db.transaction() as tx:
        assert await tx.get(InstanceKey, session_id) is None
