"""/metrics for Prometheus: the database's figures (sessions, lag, attempts, provisioning,
revenue), this process's counts (metering, HTTP latency), and the optional bearer token; and
what `sizzle worker --metrics-port` serves (its counts, its orchestrator's breakers)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import GpuSession
from sizzle.domain.tiers import TIERS
from sizzle.errors import ProviderUnavailable
from sizzle.metrics import Metrics
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import (
    assert_error,
    launch_active_session,
    launch_ready_session,
    log_in,
    make_user,
    run_for,
)
from tests.services.test_orchestrator import ScriptedProvider, orchestrate


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def scrape(
    client: httpx.AsyncClient, **headers: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_metrics_follow_a_session(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    auth = await log_in(client, email=(await make_user(db, now=clock.now(), credit_usd="5")).email)
    before = await scrape(client)
    assert value(before, "sizzle_revenue_net_micro_usd") == 0
    assert value(before, "sizzle_provider_up", provider="demo") == 1
    assert value(before, "sizzle_provider_breaker_state", provider="demo", state="closed") == 1

    await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=7 * 60)  # 7 minutes started: 5 free, 2 paid at $0.15
    found = await scrape(client)
    assert value(found, "sizzle_sessions", status="active", tier="starter") == 1
    assert value(found, "sizzle_launch_attempts_total", provider="demo", outcome="launched") == 1
    assert value(found, "sizzle_provisioning_seconds_count", provider="demo") == 1
    assert value(found, "sizzle_provisioning_seconds_bucket", provider="demo", le="5.0") == 1
    assert value(found, "sizzle_revenue_net_micro_usd") == 300_000
    assert value(found, "sizzle_minutes_charged_total") == 7
    assert value(found, "sizzle_metering_pass_seconds_count") > 0
    # metered every 5 s: the oldest unbilled minute is never more than a pass old
    assert value(found, "sizzle_metering_lag_seconds") == 0
    clock.advance(90)  # no pass for a while: minute 8 started 90 s ago and is unbilled
    assert value(await scrape(client), "sizzle_metering_lag_seconds") == 90
    # HTTP latency, by route template
    assert (
        value(
            found,
            "sizzle_http_request_seconds_count",
            method="GET",
            route="/api/v1/sessions/{session_id}",
            status="200",
        )
        >= 1
    )


async def test_stuck_provisioning_is_counted(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    auth = await log_in(client, email=(await make_user(db, now=clock.now())).email)
    created = await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=auth)
    assert created.status_code == 201
    assert value(await scrape(client), "sizzle_sessions_stuck_provisioning") == 0
    clock.advance(16 * 60)  # nobody ran the jobs
    assert value(await scrape(client), "sizzle_sessions_stuck_provisioning") == 1


async def test_a_metrics_token_guards_the_scrape(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    state = AppState.build(
        settings.model_copy(update={"metrics_token": "s3cret-scrape"}), clock=clock, db=db
    )
    transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://sizzle.test") as client:
        assert_error(await client.get("/metrics"), 401)
        assert_error(await client.get("/metrics", headers={"Authorization": "Bearer nope"}), 401)
        assert "sizzle_sessions" in str(await scrape(client, Authorization="Bearer s3cret-scrape"))


async def test_revenue_is_a_gauge_that_minutes_given_back_lower(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    """A lost instance's minutes are refunded: the revenue balance goes down, so it is exported
    as a gauge (rate() would read the fall as a counter reset)."""
    auth = await log_in(client, email=(await make_user(db, now=clock.now(), credit_usd="5")).email)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=6 * 60)  # 6 minutes started: 5 free, 1 paid
    await state.jobs.reconcile_now()  # seen running now
    async with db.transaction() as tx:
        instance_id = (await tx.get(GpuSession, session_id)).instance_id
    await state.providers["demo"].terminate(instance_id)  # gone behind our back
    await run_for(state, clock, seconds=60)  # minute 7 is charged meanwhile
    assert value(await scrape(client), "sizzle_revenue_net_micro_usd") == 300_000
    await state.jobs.reconcile_now()
    await run_for(state, clock, seconds=5)
    assert (await state.jobs.reconcile_now()).sessions_lost == [session_id]

    found = await scrape(client)
    assert value(found, "sizzle_revenue_net_micro_usd") == 150_000  # minute 7 given back
    types = {family.name: family.type for family in state.metrics.registry.collect()}
    assert types["sizzle_revenue_net_micro_usd"] == "gauge"


def test_a_worker_serves_only_what_it_counts(state: AppState, clock: FakeClock) -> None:
    """`sizzle worker --metrics-port` serves its counts and its breakers: no database figures,
    which only the API's /metrics reads (a worker's would never be refreshed)."""
    metrics = Metrics()
    served = metrics.worker_registry(state.orchestrator, clock=clock)
    worker = {family.name for family in served.collect()}
    everything = {family.name for family in metrics.registry.collect()}
    assert "sizzle_minutes_charged" in worker and "sizzle_metering_pass_seconds" in worker
    assert "sizzle_provider_up" in worker and "sizzle_provider_breaker_state" in worker
    assert "sizzle_sessions" not in worker and "sizzle_metering_lag_seconds" not in worker
    assert worker < everything and "sizzle_sessions" in everything


async def test_a_reconciler_blind_at_a_provider_shows_on_both_scrapes(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, monkeypatch
) -> None:
    """Whichever process runs the reconciler, its scrape tells how many rounds in a row a
    provider could not be listed, and when it last was."""

    async def refused() -> list:
        raise ProviderUnavailable("demo: HTTP 401")

    await state.jobs.reconcile_now()
    listed_at = clock.now().timestamp()
    monkeypatch.setattr(state.providers["demo"], "list_instances", refused)
    for _ in range(3):
        clock.advance(60)
        await state.jobs.reconcile_now()
    api = await scrape(client)
    assert value(api, "sizzle_reconciler_blind_rounds", provider="demo") == 3
    assert value(api, "sizzle_reconciler_last_listed_timestamp_seconds", provider="demo") == (
        listed_at
    )
    worker = state.metrics.worker_registry(state.orchestrator, clock=clock)
    assert worker.get_sample_value("sizzle_reconciler_blind_rounds", {"provider": "demo"}) == 3


async def test_a_worker_serves_its_own_orchestrators_breakers(clock: FakeClock) -> None:
    """Launches happen in the worker: its port shows the breakers they trip, read at scrape."""
    flaky, steady = ScriptedProvider("flaky", [1]), ScriptedProvider("steady", [100])
    orchestrator = orchestrate(clock, flaky, steady)
    registry = Metrics().worker_registry(orchestrator, clock=clock)

    def breaker(provider: str) -> tuple[float | None, ...]:
        return (
            registry.get_sample_value("sizzle_provider_up", {"provider": provider}),
            *(
                registry.get_sample_value(
                    "sizzle_provider_breaker_state", {"provider": provider, "state": state}
                )
                for state in ("closed", "open", "half_open")
            ),
        )

    assert breaker("flaky") == breaker("steady") == (1, 1, 0, 0)
    flaky.offer_error = ProviderUnavailable("flaky: HTTP 502")
    for _ in range(3):
        await orchestrator.offers_for(TIERS["starter"], fresh=True)
    assert breaker("flaky") == (0, 0, 1, 0)
    assert breaker("steady") == (1, 1, 0, 0)
    clock.advance(31)  # cooled down: one call may try it
    assert breaker("flaky") == (1, 0, 0, 1)


async def test_notifications_made_and_mails_sent_are_counted(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    auth = await log_in(client, email=(await make_user(db, now=clock.now())).email)
    await launch_ready_session(client, state, clock, auth=auth)
    found = await scrape(client)
    assert value(found, "sizzle_notifications_total", kind="session_ready") == 1
    await state.jobs.notify()  # no SMTP here: the mail goes to the mail file, and counts
    found = await scrape(client)
    assert value(found, "sizzle_notification_mails_total", outcome="sent") == 1
    assert found[("sizzle_notification_mails_total", (("outcome", "failed"),))] == 0


async def test_budget_stops_are_counted(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now(), credit_usd="5", free_minutes=0)
    auth = await log_in(client, email=user.email)
    put = await client.put(
        "/api/v1/account/budget", json={"monthly_budget_usd": "0.30"}, headers=auth
    )
    assert put.status_code == 200, put.text
    assert value(await scrape(client), "sizzle_budget_stops_total") == 0
    await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=150)  # the third minute would go over
    assert value(await scrape(client), "sizzle_budget_stops_total") == 1
