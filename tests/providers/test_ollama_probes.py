"""One Ollama node that accepts connections and never answers: each node's probe is bounded on
its own, so the hung node is left out of the offers, marked unhealthy and shown to the
operator, and launches go on with the nodes that answer.

The hung node is a real loopback socket; the probe timeout (1 s: time enough for the good node
to answer on a busy machine) is set under the provider timeout (the orchestrator's offer
timeout) of 3 s.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import GpuSession
from sizzle.domain.tiers import TIERS
from sizzle.providers.ollama.plugin import UNHEALTHY_RECHECK, OllamaProvider
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import create_session, get_session, sign_up, signed_in_user
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.server import serve
from tests.providers.fakes.silent import SilentServer, silent_server
from tests.providers.test_ollama import node
from tests.web.pages import sign_in

HUNG = "no answer within 1 s"


@pytest.fixture
def good_url() -> Iterator[str]:
    with serve(fake_ollama_app(FakeOllama())) as url:
        yield url


@pytest.fixture
def hung() -> Iterator[SilentServer]:
    with silent_server() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, good_url: str, hung: SilentServer, tmp_path: Path) -> Settings:
    """The hung node first, so that it would be tried first if it were offered."""
    nodes = [
        node("box-hung", hung.url, price_per_hour_usd="0.10"),
        node("box-good", good_url, price_per_hour_usd="0.30"),
    ]
    return settings.model_copy(
        update={
            "providers": "ollama",
            "ollama_nodes": json.dumps(nodes),
            "provider_timeout_seconds": 3.0,
            "ollama_probe_timeout_seconds": 1.0,
        }
    )


@pytest.fixture
def plugin(state: AppState) -> OllamaProvider:
    provider = state.providers["ollama"]
    assert isinstance(provider, OllamaProvider)
    return provider


async def test_the_hung_node_is_left_out_of_the_offers_and_marked_unhealthy(
    plugin: OllamaProvider,
) -> None:
    offers = await plugin.offers(TIERS["starter"])
    assert [offer.offer_id for offer in offers] == ["box-good"]
    assert plugin.node_health["box-hung"].error == HUNG
    assert plugin.node_health["box-good"].error is None


async def test_a_launch_goes_on_with_the_node_that_answers(
    client: httpx.AsyncClient, state: AppState, db: Database
) -> None:
    auth = await sign_up(client)
    session_id = (await create_session(client, auth=auth))["id"]  # 503 if no offer came back
    await state.jobs.run_once()
    assert (await get_session(client, auth=auth, session_id=session_id))["status"] == "ready"
    async with db.read() as tx:
        session = await tx.get(GpuSession, session_id)
        assert (session.provider, session.instance_id) == ("ollama", "box-good")


async def test_an_unhealthy_node_is_not_probed_again_until_its_recheck(
    plugin: OllamaProvider, hung: SilentServer, clock: FakeClock
) -> None:
    await plugin.offers(TIERS["starter"])
    probes = len(hung.accepted)
    await plugin.offers(TIERS["starter"])
    assert len(hung.accepted) == probes  # left out at once: no launch waits on it again
    clock.advance(UNHEALTHY_RECHECK.total_seconds())
    assert [o.offer_id for o in await plugin.offers(TIERS["starter"])] == ["box-good"]
    assert len(hung.accepted) > probes


async def test_the_health_check_names_the_hung_node_and_why(plugin: OllamaProvider) -> None:
    health = await plugin.health()
    assert health.healthy  # one node of two still serves
    assert health.detail == f"1/2 nodes answer; box-hung unhealthy: {HUNG}"


async def test_the_operator_api_shows_the_hung_node(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    admin = await signed_in_user(client, db, clock=clock, is_admin=True)
    (ollama,) = (await client.get("/api/v1/admin/providers", headers=admin)).json()
    assert ollama["healthy"] is True
    assert f"box-hung unhealthy: {HUNG}" in ollama["detail"]


@pytest.fixture
async def browser(state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as client:
        yield client


async def test_the_operator_page_shows_the_hung_node(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock, is_admin=True)
    page = await browser.get("/admin")
    assert page.status_code == 200
    assert f"box-hung unhealthy: {HUNG}" in page.text
