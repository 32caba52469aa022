"""/metrics for Prometheus: the database's figures (sessions, lag, attempts, provisioning,
revenue), this process's counts (metering, HTTP latency), and the optional bearer token."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.metrics import Metrics
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import assert_error, launch_active_session, log_in, make_user, run_for


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
    assert value(before, "sizzle_revenue_micro_usd_total") == 0
    assert value(before, "sizzle_provider_up", provider="demo") == 1
    assert value(before, "sizzle_provider_breaker_state", provider="demo", state="closed") == 1

    await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=7 * 60)  # 7 minutes started: 5 free, 2 paid at $0.15
    found = await scrape(client)
    assert value(found, "sizzle_sessions", status="active", tier="starter") == 1
    assert value(found, "sizzle_launch_attempts_total", provider="demo", outcome="launched") == 1
    assert value(found, "sizzle_provisioning_seconds_count", provider="demo") == 1
    assert value(found, "sizzle_provisioning_seconds_bucket", provider="demo", le="5.0") == 1
    assert value(found, "sizzle_revenue_micro_usd_total") == 300_000
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


def test_a_worker_serves_only_what_it_counts() -> None:
    """`sizzle worker --metrics-port` serves the process registry: no database figures, which
    only the API's /metrics reads (a worker's would never be refreshed)."""
    metrics = Metrics()
    worker = {family.name for family in metrics.process_registry.collect()}
    everything = {family.name for family in metrics.registry.collect()}
    assert "sizzle_minutes_charged" in worker and "sizzle_metering_pass_seconds" in worker
    assert "sizzle_sessions" not in worker and "sizzle_metering_lag_seconds" not in worker
    assert worker < everything and "sizzle_sessions" in everything
