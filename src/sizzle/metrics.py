"""Prometheus metrics: `Metrics.registry` is served at `/metrics`, `Metrics.worker_registry()`
by `sizzle worker --metrics-port`.

Three kinds:
- read from the database at each scrape (`/metrics` only), so every replica tells the same
  truth: sessions by status and tier, sessions stuck provisioning, metering lag, launch
  attempts (failovers) by provider and outcome, provisioning time of the last day by provider,
  net revenue (a gauge: minutes given back lower it), notifications made by kind, and
  the sessions idle auto-stop paused or stopped;
- counted in this process: metering pass duration, minutes charged and sessions stopped for
  their account's monthly budget (in the process that meters: `sizzle serve`, or
  `sizzle worker`), notification mails by outcome (in the process that mails), orphan
  instances destroyed, HTTP latency by route, and, in the process that reconciles, each
  provider's failed listings in a row and its last good listing (a reconciler blind at a
  provider);
- each provider's breaker as this process's orchestrator sees it: an API replica's from its
  offer look-ups, the worker's from the launches it makes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from sizzle.clock import to_ms
from sizzle.db.models import GpuSession, LaunchAttempt, LedgerAccount, Notification
from sizzle.domain.tiers import TIERS
from sizzle.services import launch_queue, ledger, reports
from sizzle.services.breaker import BreakerState

if TYPE_CHECKING:
    from sizzle.clock import Clock
    from sizzle.db.database import Database
    from sizzle.jobs.notification_mail import MailRound
    from sizzle.services.orchestrator import Orchestrator

PROVISIONING_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0)
STUCK_PROVISIONING_AFTER = timedelta(minutes=15)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class _Breaker:
    """One provider's breaker at a moment, and whether launches may use the provider."""

    state: BreakerState
    usable: bool


def _read_breakers(orchestrator: Orchestrator, now: datetime) -> dict[str, _Breaker]:
    return {
        name: _Breaker(status.state(now), status.usable(now))
        for name, status in orchestrator.status.items()
    }


def _provider_families(breakers: Mapping[str, _Breaker]) -> Iterator[Metric]:
    """`sizzle_provider_up` and `sizzle_provider_breaker_state`, one series per provider."""
    up = GaugeMetricFamily(
        "sizzle_provider_up", "1 if launches may use the provider now.", labels=["provider"]
    )
    breaker = GaugeMetricFamily(
        "sizzle_provider_breaker_state",
        "The provider's circuit breaker: 1 on its current state.",
        labels=["provider", "state"],
    )
    for provider, reading in sorted(breakers.items()):
        up.add_metric([provider], 1 if reading.usable else 0)
        for state in BreakerState:
            breaker.add_metric([provider, state.value], 1 if reading.state is state else 0)
    yield up
    yield breaker


class _ProviderBreakers(Collector):
    """The provider gauges of an orchestrator, read at each scrape (the worker has no refresh)."""

    def __init__(self, orchestrator: Orchestrator, clock: Clock) -> None:
        self.orchestrator = orchestrator
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        return _provider_families(_read_breakers(self.orchestrator, self.clock.now()))


@dataclass
class _Snapshot:
    """What the last scrape read from the database."""

    sessions: dict[tuple[str, str], int] = field(default_factory=dict)
    stuck_provisioning: int = 0
    metering_lag_seconds: float = 0.0
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    provisioning: dict[str, list[float]] = field(default_factory=dict)
    revenue_micros: int = 0
    notifications: dict[str, int] = field(default_factory=dict)
    queue_waiting: dict[str, int] = field(default_factory=dict)
    queue_oldest_wait_seconds: float = 0.0
    idle_stops: dict[str, int] = field(default_factory=dict)
    breakers: dict[str, _Breaker] = field(default_factory=dict)


class _FromDatabase(Collector):
    def __init__(self) -> None:
        self.snapshot = _Snapshot()

    def collect(self) -> Iterable[Metric]:
        s = self.snapshot
        sessions = GaugeMetricFamily(
            "sizzle_sessions", "Sessions by status and tier.", labels=["status", "tier"]
        )
        for (status, tier), count in sorted(s.sessions.items()):
            sessions.add_metric([status, tier], count)
        yield sessions
        yield GaugeMetricFamily(
            "sizzle_sessions_stuck_provisioning",
            f"Sessions pending or provisioning for over {STUCK_PROVISIONING_AFTER}.",
            value=s.stuck_provisioning,
        )
        yield GaugeMetricFamily(
            "sizzle_metering_lag_seconds",
            "How long the oldest started, unbilled minute of an active session has waited.",
            value=s.metering_lag_seconds,
        )
        attempts = CounterMetricFamily(
            "sizzle_launch_attempts",
            "Offers tried while launching, by provider and outcome (not launched = a failover).",
            labels=["provider", "outcome"],
        )
        for (provider, outcome), count in sorted(s.attempts.items()):
            attempts.add_metric([provider, outcome], count)
        yield attempts
        provisioning = HistogramMetricFamily(
            "sizzle_provisioning_seconds",
            "From request to ready, sessions ready in the last 24 hours, by provider.",
            labels=["provider"],
        )
        for provider, seconds in sorted(s.provisioning.items()):
            buckets = [
                (str(bound), sum(1 for x in seconds if x <= bound))
                for bound in PROVISIONING_BUCKETS
            ]
            buckets.append(("+Inf", len(seconds)))
            provisioning.add_metric([provider], buckets, sum_value=sum(seconds))
        yield provisioning
        # a gauge, not a counter: minutes given back (a lost instance) lower the balance
        yield GaugeMetricFamily(
            "sizzle_revenue_net_micro_usd",
            "Credit charged for GPU minutes, net of minutes given back, in micro-dollars "
            "(the ledger's revenue balance).",
            value=s.revenue_micros,
        )
        notifications = CounterMetricFamily(
            "sizzle_notifications",
            "Notifications made, by kind (an account's deletion takes its own away).",
            labels=["kind"],
        )
        for kind, count in sorted(s.notifications.items()):
            notifications.add_metric([kind], count)
        yield notifications
        waiting = GaugeMetricFamily(
            "sizzle_queued_launches_waiting",
            'Launches waiting for a GPU ("tell me when it\'s free"), by tier.',
            labels=["tier"],
        )
        for tier in sorted(set(TIERS) | set(s.queue_waiting)):  # 0 for a tier nobody waits for
            waiting.add_metric([tier], s.queue_waiting.get(tier, 0))
        yield waiting
        yield GaugeMetricFamily(
            "sizzle_queued_launch_oldest_wait_seconds",
            "How long the longest-waiting queued launch has waited (0 when none waits).",
            value=s.queue_oldest_wait_seconds,
        )
        idle = CounterMetricFamily(
            "sizzle_idle_stops",
            "Sessions idle auto-stop ended for want of use: paused (where the provider can "
            "pause) or stopped.",
            labels=["action"],
        )
        for action, count in sorted(s.idle_stops.items()):
            idle.add_metric([action], count)
        yield idle
        yield from _provider_families(s.breakers)


MAIL_OUTCOMES = ("sent", "failed", "gave_up", "capped")
QUEUE_OUTCOMES = ("launched", "requeued", "expired", "refused")


class Metrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self) -> None:
        # everything, served at /metrics
        self.registry = CollectorRegistry()
        self._database = _FromDatabase()
        self.registry.register(self._database)
        self.metering_pass_seconds = Histogram(
            "sizzle_metering_pass_seconds",
            "Duration of one metering pass in this process.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=None,
        )
        self.minutes_charged = Counter(
            "sizzle_minutes_charged",
            "Session minutes charged by this process's metering passes.",
            registry=None,
        )
        self.budget_stops = Counter(
            "sizzle_budget_stops",
            "Sessions this process's metering passes stopped because their account's monthly "
            "budget was reached.",
            registry=None,
        )
        self.orphans_destroyed = Counter(
            "sizzle_orphan_instances_destroyed",
            "Instances found at a provider with no live session, and destroyed.",
            ["provider"],
            registry=None,
        )
        self.reconciler_blind_rounds = Gauge(
            "sizzle_reconciler_blind_rounds",
            "Reconciler rounds in a row that could not list the provider's instances "
            "(0 after a listing that worked): while above 0, orphans there are not destroyed "
            "and lost instances not noticed.",
            ["provider"],
            registry=None,
        )
        self.reconciler_last_listed = Gauge(
            "sizzle_reconciler_last_listed_timestamp_seconds",
            "When the reconciler last listed the provider's instances (Unix time); absent "
            "until it has once.",
            ["provider"],
            registry=None,
        )
        self.queued_launch_outcomes = Counter(
            "sizzle_queued_launch_outcomes",
            "What this process's launch-queue passes did with waiting launches: launched, "
            "requeued (the GPU found failed to start), expired, refused (no longer allowed).",
            ["outcome"],
            registry=None,
        )
        self.http_request_seconds = Histogram(
            "sizzle_http_request_seconds",
            "HTTP request latency by route template.",
            ["method", "route", "status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=None,
        )
        self.notification_mails = Counter(
            "sizzle_notification_mails",
            "Notification mails this process tried, by outcome: sent, failed (tried again "
            "later), gave_up (after the last try), capped (over the hourly cap: inbox only).",
            ["outcome"],
            registry=None,
        )
        # what this process counts, served by /metrics and by a worker alike
        self._counted: tuple[Collector, ...] = (
            self.notification_mails,
            self.metering_pass_seconds,
            self.minutes_charged,
            self.budget_stops,
            self.orphans_destroyed,
            self.reconciler_blind_rounds,
            self.reconciler_last_listed,
            self.queued_launch_outcomes,
            self.http_request_seconds,
        )
        for collector in self._counted:
            self.registry.register(collector)
        # Every outcome is served from the start, at 0: a rate over a series that appears only
        # at its first event misses that event.
        for outcome in MAIL_OUTCOMES:
            self.notification_mails.labels(outcome)
        for outcome in QUEUE_OUTCOMES:
            self.queued_launch_outcomes.labels(outcome)

    def count_mail_round(self, result: MailRound) -> None:
        for outcome in MAIL_OUTCOMES:
            if getattr(result, outcome):
                self.notification_mails.labels(outcome).inc(getattr(result, outcome))

    def worker_registry(self, orchestrator: Orchestrator, *, clock: Clock) -> CollectorRegistry:
        """What `sizzle worker --metrics-port` serves: this process's counts and the breakers of
        the orchestrator it launches with, no database figures (nothing would refresh them)."""
        registry = CollectorRegistry()
        for collector in self._counted:
            registry.register(collector)
        registry.register(_ProviderBreakers(orchestrator, clock))
        return registry

    async def refresh(self, db: Database, orchestrator: Orchestrator, *, now: datetime) -> None:
        """Read the database's figures for the scrape (one short read transaction)."""
        snapshot = _Snapshot()
        now_ms = to_ms(now)
        async with db.read() as tx:
            rows = await tx.execute(
                select(GpuSession.status, GpuSession.tier, func.count()).group_by(
                    GpuSession.status, GpuSession.tier
                )
            )
            snapshot.sessions = {(str(s), str(t)): int(n) for s, t, n in rows}
            snapshot.stuck_provisioning = int(
                await tx.scalar(
                    select(func.count())
                    .select_from(GpuSession)
                    .where(
                        GpuSession.status.in_(("pending", "provisioning")),
                        GpuSession.created_at <= now - STUCK_PROVISIONING_AFTER,
                    )
                )
                or 0
            )
            behind = await tx.scalar(
                select(
                    func.max(
                        GpuSession.active_ms_before
                        + (now_ms - GpuSession.active_since_ms)
                        - GpuSession.charged_minutes * 60_000
                    )
                ).where(GpuSession.status == "active", GpuSession.active_since_ms.is_not(None))
            )
            snapshot.metering_lag_seconds = max(0, int(behind or 0)) / 1000
            rows = await tx.execute(
                select(LaunchAttempt.provider, LaunchAttempt.outcome, func.count()).group_by(
                    LaunchAttempt.provider, LaunchAttempt.outcome
                )
            )
            snapshot.attempts = {(str(p), str(o)): int(n) for p, o, n in rows}
            ready_rows = await tx.execute(
                select(GpuSession.provider, GpuSession.created_at, GpuSession.ready_at).where(
                    GpuSession.ready_at >= now - timedelta(hours=24),
                    GpuSession.provider.is_not(None),
                )
            )
            for provider, created, ready in ready_rows:
                if ready is not None:
                    snapshot.provisioning.setdefault(str(provider), []).append(
                        (ready - created).total_seconds()
                    )
            snapshot.revenue_micros = int(
                await tx.scalar(
                    select(LedgerAccount.balance).where(LedgerAccount.name == ledger.REVENUE)
                )
                or 0
            )
            made = await tx.execute(
                select(Notification.kind, func.count()).group_by(Notification.kind)
            )
            snapshot.notifications = {str(kind): int(n) for kind, n in made}
            waiting = await launch_queue.waiting_summary(tx, now=now)
            snapshot.queue_waiting = waiting.by_tier
            snapshot.queue_oldest_wait_seconds = waiting.oldest_wait_seconds
            snapshot.idle_stops = await reports.idle_stops(tx)
        snapshot.breakers = _read_breakers(orchestrator, now)
        self._database.snapshot = snapshot


class RequestTimer:
    """ASGI middleware: the latency of every HTTP request, by its route's template."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.http_request_seconds.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )
