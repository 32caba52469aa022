"""One watcher per process for every live session stream: each tick reads all the watched
sessions in one read transaction and hands each stream the latest sighting of its session.

Before it, every stream polled the database once a second on its own: a thousand open pages
were a thousand transactions a second and an exhausted pool. Now a thousand streams cost one
read a second (two statements when some want balances), however many watch each session.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.clock import Clock, to_ms
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, LedgerAccount
from sizzle.domain.lifecycle import SessionStatus
from sizzle.errors import RateLimited
from sizzle.services import sessions
from sizzle.services.ledger import Balances
from sizzle.services.notifications import PAGE_SEEN_EVERY

log = structlog.get_logger(__name__)

HEARTBEAT_TICKS = 15  # a sighting at least this often, so a page's timer stays in step
IDS_PER_STATEMENT = 500  # well under SQLite's and asyncpg's bound-parameter limits

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Sighting:
    """A session as read at one tick, shared by every stream that watches it."""

    session: GpuSession
    now: datetime
    balances: Balances | None = None  # its owner's, when a stream asked for them
    memo: dict[Hashable, object] = field(default_factory=dict)  # what streams derive, once

    @property
    def ended(self) -> bool:
        return SessionStatus(self.session.status).is_terminal()


class Subscription:
    """One stream's place at the watcher: holds only the latest sighting, never a backlog."""

    def __init__(
        self,
        watcher: SessionWatcher,
        session_id: str,
        user_id: str,
        *,
        balances: bool,
        page: bool = False,
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.wants_balances = balances
        self.page = page  # a browser's live page: its session is marked seen while it is open
        self._watcher = watcher
        self._latest: Sighting | None = None
        self._gone = False  # the session vanished or the watcher closed: no more sightings
        self._ready = asyncio.Event()
        self.closed = False

    def push(self, sighting: Sighting) -> None:
        self._latest = sighting  # a slow reader skips what it missed, it never queues it
        self._ready.set()

    def end(self) -> None:
        self._gone = True
        self._ready.set()

    async def next(self) -> Sighting | None:
        """The next sighting of the session; None once there will be no more."""
        await self._ready.wait()
        latest, self._latest = self._latest, None
        if not self._gone:  # once gone, every later call answers at once
            self._ready.clear()
        return latest

    def poll(self) -> Sighting | None:
        """The sighting waiting to be read, if any, without waiting for one."""
        latest, self._latest = self._latest, None
        if not self._gone:
            self._ready.clear()
        return latest

    def close(self) -> None:
        """Stop watching (the stream ended or its client went away); safe to call twice."""
        if not self.closed:
            self.closed = True
            self._watcher._forget(self)


@dataclass
class _Watch:
    """A watched session: its subscribers and what they were last sent."""

    user_id: str
    subscribers: set[Subscription] = field(default_factory=set)
    last_key: tuple[object, ...] | None = None
    ticks_since: int = 0


def _change_key(session: GpuSession) -> tuple[object, ...]:
    """What a stream reports a change of; the timer and cost move on their own in between."""
    return (
        session.status,
        session.charged_minutes,
        session.progress_phase,
        session.progress_percent,
        session.last_error,
        session.last_activity_ms,  # a use moves the idle countdown
    )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


async def _balances_of(tx: AsyncSession, user_ids: Iterable[str]) -> dict[str, Balances]:
    """The balances of several users in one statement per chunk."""
    kinds: dict[str, dict[str, int]] = {}
    for chunk in _chunks(sorted(set(user_ids)), IDS_PER_STATEMENT):
        rows = await tx.execute(
            select(LedgerAccount.user_id, LedgerAccount.kind, LedgerAccount.balance).where(
                LedgerAccount.user_id.in_(chunk)
            )
        )
        for user_id, kind, balance in rows:
            kinds.setdefault(str(user_id), {})[kind] = balance
    return {
        user_id: Balances(
            free_minutes=by_kind.get("free_minutes", 0),
            credit_micros=by_kind.get("credit", 0),
            included_minutes=by_kind.get("included_minutes", 0),
        )
        for user_id, by_kind in kinds.items()
    }


async def _first_read(
    tx: AsyncSession, session_id: str, user_id: str, *, balances: bool
) -> tuple[GpuSession, Balances | None]:
    session = await sessions.get_session(tx, session_id, user_id=user_id)
    money = (await _balances_of(tx, [user_id])).get(user_id) if balances else None
    return session, money


class SessionWatcher:
    """Reads every watched session once per tick and fans the sightings out to the streams.

    The loop starts with the first subscriber and ends when none is left, so an idle process
    does nothing. Tests make a `manual()` one and call `tick()` instead of waiting."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        max_streams_per_user: int,
        interval_seconds: float = 1.0,
        sleep: Sleep | None = None,
        ticks_on_its_own: bool = True,
    ) -> None:
        self.db = db
        self.clock = clock
        self.max_streams_per_user = max_streams_per_user
        self.interval_seconds = interval_seconds
        self._sleep: Sleep = sleep or asyncio.sleep
        self._ticks_on_its_own = ticks_on_its_own
        self._watches: dict[str, _Watch] = {}
        self._streams_of: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.reads = 0  # transactions the ticks opened, for benchmarks and tests
        self.marks = 0  # statements that marked live pages seen, likewise
        self.ticks = 0
        self._pages_marked: set[str] = set()  # sessions marked seen in this period
        self._pages_marked_ms: int | None = None  # when the period began

    @classmethod
    def manual(cls, db: Database, clock: Clock, *, max_streams_per_user: int) -> SessionWatcher:
        """A watcher whose loop never ticks on its own: the caller calls `tick()`."""
        return cls(db, clock, max_streams_per_user=max_streams_per_user, ticks_on_its_own=False)

    def streams_of(self, user_id: str) -> int:
        """How many streams the user has open in this process."""
        return self._streams_of.get(user_id, 0)

    @property
    def watched(self) -> int:
        """How many sessions the ticks read."""
        return len(self._watches)

    @property
    def running(self) -> bool:
        """Whether the loop is ticking (only while someone watches)."""
        return self._task is not None and not self._task.done()

    async def watch(
        self,
        session_id: str,
        *,
        user_id: str,
        balances: bool = False,
        page: bool = False,
        tx: AsyncSession | None = None,
    ) -> tuple[Sighting, Subscription | None]:
        """The user's session as it is now (NotFound if it is not theirs) and, while it has not
        ended, a subscription to its changes (RateLimited past the per-user cap). Read in `tx`,
        the request's read transaction, when given. A `page` (the live page in a browser)
        marks its session seen while it is open, so that what the page shows is not mailed."""
        now = self.clock.now()
        if tx is None:
            async with self.db.read() as own:
                session, money = await _first_read(own, session_id, user_id, balances=balances)
        else:
            session, money = await _first_read(tx, session_id, user_id, balances=balances)
        first = Sighting(session, now, money)
        if first.ended:
            return first, None
        if self.streams_of(user_id) >= self.max_streams_per_user:
            raise RateLimited(
                f"At most {self.max_streams_per_user} live session streams may be open at once "
                "per account; close a page or stream first."
            )
        subscription = Subscription(self, session_id, user_id, balances=balances, page=page)
        watch = self._watches.get(session_id)
        if watch is None:
            watch = self._watches[session_id] = _Watch(user_id, last_key=_change_key(session))
        watch.subscribers.add(subscription)
        self._streams_of[user_id] = self.streams_of(user_id) + 1
        if self._ticks_on_its_own and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(), name="session-watcher")
        return first, subscription

    def _forget(self, subscription: Subscription) -> None:
        left = self.streams_of(subscription.user_id) - 1
        if left > 0:
            self._streams_of[subscription.user_id] = left
        else:
            self._streams_of.pop(subscription.user_id, None)
        watch = self._watches.get(subscription.session_id)
        if watch is not None:
            watch.subscribers.discard(subscription)
            if not watch.subscribers:
                del self._watches[subscription.session_id]

    async def _run(self) -> None:
        while self._watches:
            await self._sleep(self.interval_seconds)
            try:
                await self.tick()
            except Exception:  # a database hiccup: the streams wait for the next tick
                log.exception("session_watch.tick_failed", watched=len(self._watches))

    async def tick(self) -> None:
        """Read every watched session once; push changes, heartbeats and ends."""
        if not self._watches:
            return
        ids = list(self._watches)
        now = self.clock.now()
        self.ticks += 1
        self.reads += 1
        async with self.db.read() as tx:
            found: dict[str, GpuSession] = {}
            for chunk in _chunks(ids, IDS_PER_STATEMENT):
                for session in await tx.scalars(select(GpuSession).where(GpuSession.id.in_(chunk))):
                    found[session.id] = session
            due = [session_id for session_id in ids if self._is_due(session_id, found)]
            owners = {
                self._watches[session_id].user_id
                for session_id in due
                if session_id in found
                and any(s.wants_balances for s in self._watches[session_id].subscribers)
            }
            money = await _balances_of(tx, owners) if owners else {}
        for session_id in due:
            self._deliver(session_id, found.get(session_id), now, money)
        await self._mark_pages_seen(now)

    async def _mark_pages_seen(self, now: datetime) -> None:
        """Mark the sessions open in a live page seen: all of them about every PAGE_SEEN_EVERY,
        and a page newly opened at the next tick; one statement for every page of the process
        (per IDS_PER_STATEMENT), never one per stream."""
        now_ms = to_ms(now)
        period_ms = PAGE_SEEN_EVERY.total_seconds() * 1000
        if self._pages_marked_ms is None or now_ms - self._pages_marked_ms >= period_ms:
            self._pages_marked, self._pages_marked_ms = set(), now_ms
        open_pages = {
            session_id
            for session_id, watch in self._watches.items()
            if any(s.page for s in watch.subscribers)
        }
        unmarked = sorted(open_pages - self._pages_marked)
        if not unmarked:
            return
        self._pages_marked |= set(unmarked)
        async with self.db.transaction() as tx:
            for chunk in _chunks(unmarked, IDS_PER_STATEMENT):
                self.marks += 1
                await tx.execute(
                    update(GpuSession)
                    .where(GpuSession.id.in_(chunk))
                    .values(page_seen_ms=now_ms)
                    .execution_options(synchronize_session=False)
                )

    def _is_due(self, session_id: str, found: dict[str, GpuSession]) -> bool:
        watch = self._watches.get(session_id)
        if watch is None:  # every subscriber left during the read
            return False
        session = found.get(session_id)
        if session is None:
            return True  # gone (its account was deleted): its streams end
        key = _change_key(session)
        if key != watch.last_key or watch.ticks_since + 1 >= HEARTBEAT_TICKS:
            watch.last_key, watch.ticks_since = key, 0
            return True
        watch.ticks_since += 1
        return False

    def _deliver(
        self,
        session_id: str,
        session: GpuSession | None,
        now: datetime,
        money: dict[str, Balances],
    ) -> None:
        watch = self._watches.get(session_id)
        if watch is None:  # every subscriber left during the read
            return
        if session is None:
            del self._watches[session_id]
            for subscription in list(watch.subscribers):
                subscription.end()
            return
        sighting = Sighting(session, now, money.get(watch.user_id))
        for subscription in watch.subscribers:
            subscription.push(sighting)
        if sighting.ended:
            del self._watches[session_id]  # its streams close their subscriptions as they end

    async def close(self) -> None:
        """Stop the loop and end every stream (the process is shutting down)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        watches, self._watches = self._watches, {}
        for watch in watches.values():
            for subscription in watch.subscribers:
                subscription.end()
