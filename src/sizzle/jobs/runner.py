"""Runs the background jobs on their intervals: in `sizzle serve` or in `sizzle worker`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog

from sizzle.clock import Clock
from sizzle.db.database import Database
from sizzle.jobs.idle import GpuReader, IdleCheck, IdleReport
from sizzle.jobs.launch_queue import QueuePass, run_queue_pass
from sizzle.jobs.metering import run_metering_pass
from sizzle.jobs.notification_mail import MailRound, mail_notifications
from sizzle.jobs.provisioning import launch_pending, mark_ready
from sizzle.jobs.reaper import reap
from sizzle.jobs.reconciler import ReconcileReport, reconcile
from sizzle.metrics import QUEUE_OUTCOMES, Metrics
from sizzle.providers.base import Provider
from sizzle.services import idempotency, notification_events
from sizzle.services.activity import ActivityRecorder
from sizzle.services.mail import Mailer
from sizzle.services.orchestrator import Orchestrator
from sizzle.services.readiness import ReadinessProbe
from sizzle.settings import Settings
from sizzle.workload.tunnel import Tunnels

log = structlog.get_logger(__name__)


class JobRunner:
    """Metering every `meter_interval_seconds`; provisioning and the reaper more often; the
    reconciler every `reconcile_interval_seconds`; "still running" reminders and notification
    mails every `notification_interval_seconds`; the launch queue every
    `queue_interval_seconds`."""

    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        clock: Clock,
        providers: dict[str, Provider],
        orchestrator: Orchestrator,
        tunnels: Tunnels,
        mailer: Mailer,
        metrics: Metrics | None = None,
        activity: ActivityRecorder | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.db = db
        self.settings = settings
        self.clock = clock
        self.providers = providers
        self.orchestrator = orchestrator
        self.mailer = mailer
        # Readiness on SSH-reached instances goes through the process's tunnel pool.
        self.readiness = ReadinessProbe(
            db, tunnels, secret=settings.resolved_secret_key, clock=clock
        )
        # Idle auto-stop; `read_gpu` is set by the app (it reads through the workspace's tunnels).
        self.idle = IdleCheck(db, providers, settings, activity=activity)
        self._wake = asyncio.Event()
        self._queue_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Run after every metering pass, in order (auto-top-up): a failure is logged, not raised.
        self.after_metering: list[Callable[[], Awaitable[object]]] = []

    def poke(self) -> None:
        """Something changed (a new session): look for work now rather than at the next tick."""
        self._wake.set()

    def poke_queue(self) -> None:
        """A launch was queued: see at once whether a GPU is free for it."""
        self._queue_wake.set()

    async def meter(self) -> None:
        if self.idle.activity is not None:
            # Metering charges no minute past a session's idle limit: this process's latest
            # uses move the limits first (a use it has not written would only charge late).
            await self.idle.activity.flush()
        started = time.perf_counter()
        result = await run_metering_pass(self.db, self.providers, now=self.clock.now())
        self.metrics.metering_pass_seconds.observe(time.perf_counter() - started)
        self.metrics.minutes_charged.inc(result.minutes_charged)
        self.metrics.budget_stops.inc(len(result.stopped_for_budget))
        for hook in self.after_metering:
            try:
                await hook()
            except Exception:
                log.exception(
                    "jobs.after_metering_failed", hook=getattr(hook, "__qualname__", hook)
                )

    async def housekeep(self) -> None:
        secret = self.settings.resolved_secret_key
        await launch_pending(self.db, self.orchestrator, now=self.clock.now(), secret=secret)
        await mark_ready(
            self.db,
            self.orchestrator,
            now=self.clock.now(),
            provision_timeout=timedelta(seconds=self.settings.provision_timeout_seconds),
            secret=secret,
            readiness=self.readiness,
            queue_hold=timedelta(minutes=self.settings.queue_hold_minutes),
        )
        await reap(self.db, self.providers, self.settings, now=self.clock.now())
        await self.check_idle()

    async def check_idle(self) -> IdleReport:
        """Warn, pause or stop the sessions nobody uses (after the reaper's own limits)."""
        return await self.idle.run(now=self.clock.now())

    def read_gpus_with(self, reader: GpuReader) -> None:
        """How the idle check reads a session's GPU (the app's `gpu_reading`)."""
        self.idle.read_gpu = reader

    async def retry_queued(self) -> None:
        await self.retry_queued_now()

    async def retry_queued_now(self) -> QueuePass:
        """Launch the waiting launches that GPUs are offered for now (jobs/launch_queue.py)."""
        done = await run_queue_pass(
            self.db,
            self.orchestrator,
            now=self.clock.now(),
            lab_tiers=self.settings.lab.tiers,
        )
        for outcome in QUEUE_OUTCOMES:
            if count := getattr(done, outcome):
                self.metrics.queued_launch_outcomes.labels(outcome).inc(count)
        if done.launched:
            self.poke()  # provisioning takes the new sessions at once
        return done

    async def reconcile(self) -> None:
        await self.reconcile_now()
        await self.tidy()

    async def tidy(self) -> None:
        """Forget what is kept only for a while, on the reconciler's slower cadence:
        Idempotency-Keys older than a day."""
        async with self.db.transaction() as tx:
            await idempotency.forget_expired(tx, now=self.clock.now())

    async def reconcile_now(self) -> ReconcileReport:
        report = await reconcile(self.db, self.providers, now=self.clock.now())
        for orphan in report.orphans_destroyed:
            self.metrics.orphans_destroyed.labels(orphan.split(":", 1)[0]).inc()
        for provider, listing in report.listings.items():
            self.metrics.reconciler_blind_rounds.labels(provider).set(listing.failed_rounds)
            if listing.last_listed_at is not None:
                self.metrics.reconciler_last_listed.labels(provider).set(
                    listing.last_listed_at.timestamp()
                )
        return report

    async def notify(self) -> MailRound:
        """Make the "still running" reminders that are due, then mail what is due."""
        async with self.db.transaction() as tx:
            await notification_events.remind_still_running(tx, now=self.clock.now())
        result = await mail_notifications(
            self.db,
            self.mailer,
            now=self.clock.now(),
            base_url=self.settings.public_base_url,
            mails_per_hour=self.settings.notification_mails_per_hour,
        )
        self.metrics.count_mail_round(result)
        return result

    async def run_once(self) -> None:
        """Every job once, in order; what the tests call instead of waiting for the loops."""
        await self.retry_queued()
        await self.housekeep()
        await self.meter()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(
                self._loop("metering", self.meter, self.settings.meter_interval_seconds)
            ),
            asyncio.create_task(
                self._loop(
                    "housekeeping",
                    self.housekeep,
                    self.settings.jobs_interval_seconds,
                    wake=self._wake,
                )
            ),
            asyncio.create_task(
                self._loop("reconciler", self.reconcile, self.settings.reconcile_interval_seconds)
            ),
            asyncio.create_task(
                self._loop(
                    "notifications", self._notify, self.settings.notification_interval_seconds
                )
            ),
            asyncio.create_task(
                self._loop(
                    "launch_queue",
                    self.retry_queued,
                    self.settings.queue_interval_seconds,
                    wake=self._queue_wake,
                )
            ),
        ]

    async def _notify(self) -> None:
        await self.notify()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _loop(
        self,
        name: str,
        job: Callable[[], Awaitable[None]],
        interval: float,
        *,
        wake: asyncio.Event | None = None,
    ) -> None:
        while True:
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed pass is logged and retried next tick
                log.exception("job.failed", job=name)
            if wake is not None:
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), interval)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(interval)
