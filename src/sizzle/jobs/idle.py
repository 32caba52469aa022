"""Idle auto-stop: warns the owner of a running session nobody uses, then pauses it (stops it
where its provider cannot pause) at its idle limit, billed exactly to that moment.

Every replica and worker may run the pass: each change is made under the session's row lock
after reading the session again, and each notification is keyed, so a session is warned once
per stretch of idleness and stopped once, however many processes look."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.clock import from_ms, to_ms
from sizzle.db.database import Database
from sizzle.db.leases import lease, session_lease
from sizzle.db.models import GpuSession
from sizzle.domain.idle import (
    IDLE_ACTOR,
    WARN_BEFORE_MS,
    IdlePhase,
    busy_gpu,
    idle_phase,
    stop_at_ms,
)
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.domain.money import MS_PER_MINUTE
from sizzle.errors import SizzleError
from sizzle.providers.base import Provider, SupportsPause
from sizzle.services import idle_notices
from sizzle.services.activity import ActivityRecorder, mark_used
from sizzle.services.lifecycle import switch_status
from sizzle.services.sessions import lock_session, release_session
from sizzle.settings import Settings

log = structlog.get_logger(__name__)

S = SessionStatus
ACTOR = IDLE_ACTOR
DEMO_PROVIDER = "demo"  # its GPUs are simulated: requests alone count as use
READING_TIMEOUT_SECONDS = 10.0
READINGS_AT_ONCE = 8
# A session in its last minutes is read at most this often (the stop itself reads afresh).
READ_EVERY_MS = 60_000

GpuReader = Callable[[GpuSession], Awaitable[dict[str, Any] | None]]


@dataclass
class IdleReport:
    warned: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    kept_by_gpu: list[str] = field(default_factory=list)


class IdleCheck:
    """The pass, with what it remembers between runs in this process: when it last read each
    session's GPU (so that a session in its last minutes is not read every second)."""

    def __init__(
        self,
        db: Database,
        providers: dict[str, Provider],
        settings: Settings,
        *,
        activity: ActivityRecorder | None = None,
        read_gpu: GpuReader | None = None,
    ) -> None:
        self.db = db
        self.providers = providers
        self.settings = settings
        self.activity = activity
        self.read_gpu = read_gpu
        self._read_at: dict[str, int] = {}

    async def run(self, *, now: datetime) -> IdleReport:
        """Warn, pause or stop every running session as its idle limit says."""
        report = IdleReport()
        if self.activity is not None:
            await self.activity.flush()  # this process's requests count before anything ends
        now_ms = to_ms(now)
        async with self.db.read() as tx:
            near = list(await tx.scalars(_near_limit(now_ms)))
        self._read_at = {k: v for k, v in self._read_at.items() if k in {s.id for s in near}}
        busy = await self._busy(near, now_ms)
        if busy:
            async with self.db.transaction() as tx:
                await mark_used(tx, busy, at_ms=now_ms)
            report.kept_by_gpu = sorted(busy)
            log.info("idle.kept_by_gpu", session_ids=report.kept_by_gpu)
        for session in near:
            if session.id in busy:
                continue
            phase = idle_phase(now_ms, session.last_activity_ms, session.idle_minutes)
            if phase is IdlePhase.WARN:
                if await self._warn(session.id, now):
                    report.warned.append(session.id)
            elif phase is IdlePhase.STOP:
                outcome = await self._stop(session, now)
                if outcome is S.PAUSED:
                    report.paused.append(session.id)
                elif outcome is S.STOPPING:
                    report.stopped.append(session.id)
        return report

    async def _busy(self, near: list[GpuSession], now_ms: int) -> set[str]:
        """The sessions whose GPU reads above the threshold now: each read when about to stop,
        or in its last minutes at most once a READ_EVERY_MS. A reading that fails or times out
        is no reading: never taken for use."""
        if self.read_gpu is None:
            return set()
        due = [
            s
            for s in near
            if s.provider != DEMO_PROVIDER
            and s.instance_id
            and (
                idle_phase(now_ms, s.last_activity_ms, s.idle_minutes) is IdlePhase.STOP
                or now_ms - self._read_at.get(s.id, 0) >= READ_EVERY_MS
            )
        ]
        limit = asyncio.Semaphore(READINGS_AT_ONCE)
        threshold = self.settings.idle_gpu_percent

        async def is_busy(session: GpuSession) -> bool:
            assert self.read_gpu is not None  # noqa: S101 - checked above
            async with limit:
                self._read_at[session.id] = now_ms
                try:
                    async with asyncio.timeout(READING_TIMEOUT_SECONDS):
                        reading = await self.read_gpu(session)
                except (SizzleError, TimeoutError, OSError) as exc:
                    log.info("idle.gpu_unread", session_id=session.id, error=str(exc))
                    return False
            return busy_gpu(reading, threshold)

        answers = await asyncio.gather(*(is_busy(s) for s in due))
        return {s.id for s, busy in zip(due, answers, strict=True) if busy}

    async def _warn(self, session_id: str, now: datetime) -> bool:
        """Tell the owner, once per stretch of idleness; True if this pass told them."""
        async with self.db.transaction() as tx:
            session = await tx.get(GpuSession, session_id)
            if session is None or session.status != S.ACTIVE.value:
                return False
            if idle_phase(to_ms(now), session.last_activity_ms, session.idle_minutes) is not (
                IdlePhase.WARN
            ):
                return False
            told = await idle_notices.warn(
                tx, session, can_pause=_can_pause(self.providers, session), now=now
            )
        if told:
            log.info("idle.warned", session_id=session_id)
        return told

    async def _stop(self, seen: GpuSession, now: datetime) -> S | None:
        """Pause the session where its provider can pause, else stop it; what it became, or
        None if another process did it or a use came in between."""
        provider = self.providers.get(seen.provider or "")
        if isinstance(provider, SupportsPause) and seen.instance_id:
            # Under the session's lease, as a user's pause: a resume cannot start the GPU
            # between the status change and the provider's stop. Taken: next pass.
            async with lease(self.db, session_lease(seen.id)) as leased:
                if not leased:
                    return None
                async with self.db.transaction() as tx:
                    session = await self._end_idle(tx, seen.id, S.PAUSED, now)
                if session is None:
                    return None
                try:
                    await provider.stop(str(session.instance_id))
                except SizzleError as exc:
                    # Billing has stopped; the reconciler stops a paused session's GPU that runs.
                    log.warning("idle.pause_stop_failed", session_id=seen.id, error=exc.message)
            return S.PAUSED
        async with self.db.transaction() as tx:
            session = await self._end_idle(tx, seen.id, S.STOPPING, now)
        if session is None:
            return None
        await release_session(self.db, self.providers, session_id=seen.id, now=now)
        return S.STOPPING

    async def _end_idle(
        self, tx: AsyncSession, session_id: str, target: S, now: datetime
    ) -> GpuSession | None:
        """Under the row lock, read again: still running and past its limit? Then pause or
        stop it at the limit itself (the pass may come a little later), and tell the owner."""
        session = await lock_session(tx, session_id, user_id=None)
        limit_ms = stop_at_ms(session.last_activity_ms, session.idle_minutes)
        if session.status != S.ACTIVE.value or limit_ms is None or to_ms(now) < limit_ms:
            return None
        at = min(now, from_ms(limit_ms))
        if target is S.PAUSED:
            await switch_status(tx, session, S.PAUSED, actor=ACTOR, now=at, reason="idle")
        else:
            await switch_status(
                tx, session, S.STOPPING, actor=ACTOR, now=at, end_reason=EndReason.IDLE
            )
        await idle_notices.ended(tx, session, paused=target is S.PAUSED, now=now)
        log.info("idle.ended", session_id=session.id, to_status=target, at=at.isoformat())
        return session


def _near_limit(now_ms: int) -> Any:
    """Running sessions within the warning time of their idle limit, or past it."""
    limit_ms = GpuSession.last_activity_ms + GpuSession.idle_minutes * MS_PER_MINUTE
    return select(GpuSession).where(
        GpuSession.status == S.ACTIVE.value,
        GpuSession.idle_minutes.is_not(None),
        GpuSession.last_activity_ms.is_not(None),
        limit_ms - WARN_BEFORE_MS <= now_ms,
    )


def _can_pause(providers: dict[str, Provider], session: GpuSession) -> bool:
    provider = providers.get(session.provider or "")
    return isinstance(provider, SupportsPause) and bool(session.instance_id)
