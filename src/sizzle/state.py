"""Everything a request or a job needs, built once per process."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sizzle.clock import Clock, FileClock, SystemClock
from sizzle.db.database import Database
from sizzle.jobs.runner import JobRunner
from sizzle.metrics import Metrics
from sizzle.providers.base import Provider, ProviderContext
from sizzle.providers.registry import load_providers
from sizzle.services import session_metrics
from sizzle.services.account_links import AccountLinks
from sizzle.services.activity import ActivityRecorder
from sizzle.services.chat_proxy import ChatProxy
from sizzle.services.mail import Mailer
from sizzle.services.orchestrator import Orchestrator
from sizzle.services.payments import Payments
from sizzle.services.rate_limits import RateLimiter
from sizzle.services.session_watch import SessionWatcher
from sizzle.services.sessions import record_progress
from sizzle.services.workspace import Workspace
from sizzle.settings import Settings
from sizzle.workload.keys import DatabaseHostKeys
from sizzle.workload.tunnel import Tunnels


def clock_for(settings: Settings) -> Clock:
    """The real clock, or the file clock a test points a server process at."""
    return FileClock(settings.test_clock_file) if settings.test_clock_file else SystemClock()


@dataclass
class AppState:
    settings: Settings
    clock: Clock
    db: Database
    providers: dict[str, Provider]
    orchestrator: Orchestrator
    jobs: JobRunner
    workspace: Workspace
    chat_proxy: ChatProxy
    payments: Payments
    rate_limiter: RateLimiter
    metrics: Metrics
    mailer: Mailer
    account_links: AccountLinks
    watcher: SessionWatcher
    tunnels: Tunnels
    activity: ActivityRecorder

    @classmethod
    def build(
        cls, settings: Settings, *, clock: Clock | None = None, db: Database | None = None
    ) -> AppState:
        clock = clock or clock_for(settings)
        db = db or Database(settings.resolved_database_url)
        providers = load_providers(ProviderContext(settings=settings, clock=clock, db=db))
        for provider in providers.values():
            provider.on_progress = functools.partial(record_progress, db)
        orchestrator = Orchestrator(
            providers,
            clock=clock,
            offer_timeout_seconds=settings.provider_timeout_seconds,
            cost_multipliers=settings.cost_multipliers,
            max_offers_tried=settings.max_offers_tried,
            launch_deadline_seconds=settings.launch_deadline_seconds,
        )
        metrics = Metrics()
        tunnels = Tunnels(DatabaseHostKeys(db))  # one SSH connection per session, per process
        mailer = Mailer(
            settings.smtp_url, settings.mail_from, mail_file=settings.resolved_mail_file
        )
        activity = ActivityRecorder(db, clock)  # sessions' use, written off the requests' path
        jobs = JobRunner(
            db=db,
            settings=settings,
            clock=clock,
            providers=providers,
            orchestrator=orchestrator,
            tunnels=tunnels,
            mailer=mailer,
            metrics=metrics,
            activity=activity,
        )
        payments = Payments(settings, db, clock)
        jobs.after_metering.append(payments.top_ups.run_pass)
        state = cls(
            settings,
            clock,
            db,
            providers,
            orchestrator,
            jobs,
            workspace=Workspace(
                db,
                providers,
                tunnels=tunnels,
                secret_key=settings.resolved_secret_key,
                clock=clock,
                activity=activity,
            ),
            chat_proxy=ChatProxy(
                db,
                clock,
                connect_timeout_seconds=settings.provider_timeout_seconds,
                read_timeout_seconds=settings.chat_read_timeout_seconds,
                activity=activity,
            ),
            payments=payments,
            rate_limiter=RateLimiter(settings, clock),
            metrics=metrics,
            mailer=mailer,
            account_links=AccountLinks(db, clock, settings),
            watcher=SessionWatcher(db, clock, max_streams_per_user=settings.max_streams_per_user),
            tunnels=tunnels,
            activity=activity,
        )
        jobs.read_gpus_with(functools.partial(session_metrics.gpu_reading, state))
        return state

    async def close(self) -> None:
        """Stop the jobs and the live streams, close the chat proxy, the SSH tunnels, provider
        connections and the database pool."""
        await self.jobs.stop()
        await self.watcher.close()
        await self.chat_proxy.close()
        await self.activity.close()
        await self.tunnels.aclose()
        for provider in self.providers.values():
            await provider.close()
        await self.db.dispose()
