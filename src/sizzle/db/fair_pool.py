"""A connection pool that serves its waiters in the order they came.

SQLAlchemy's asyncio pool keeps its free connections in an `asyncio.Queue`. When every
connection is out, a checkout waits on the queue; a connection given back wakes the first
waiter, but until that waiter runs, the connection sits in the queue, and a request that
arrives in between takes it. The waiter then finds the queue empty and waits again, at the
back of the line. Under load (more requests in flight than connections) a few requests lose
that race over and over: with 64 connections' worth of requests on a pool of 20, some waited
more than 2 s while the median was 35 ms (`bench/api.py --concurrency 64` on PostgreSQL).
asyncpg's own pool and sqlx had the same line-cutting (asyncpg #1247, sqlx #453).

Here a connection given back goes straight to the longest waiter, and a checkout waits
whenever anyone is already waiting, so the line is first come, first served.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import await_only
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty

T = TypeVar("T")


class FairQueue(AsyncAdaptedQueue[T]):
    """The pool's queue of free connections, with a first-come-first-served line of waiters:
    an item put back is handed to the first waiter still waiting, and a get waits behind
    anyone already in line."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._line: deque[asyncio.Future[T]] = deque()

    def _waiting(self) -> bool:
        while self._line and self._line[0].done():  # left the line (timed out, cancelled)
            self._line.popleft()
        return bool(self._line)

    def put_nowait(self, item: T) -> None:
        if self._waiting():
            self._line.popleft().set_result(item)
            return
        super().put_nowait(item)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        if not self._waiting():
            try:
                return self.get_nowait()
            except Empty:
                if not block:
                    raise
        elif not block:
            raise Empty()
        return await_only(self._wait_in_line(timeout))

    async def _wait_in_line(self, timeout: float | None) -> T:
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._line.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return waiter.result()  # handed one just as the time ran out: take it
            waiter.cancel()  # leaves the line
            raise Empty() from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())  # handed one, then cancelled: pass it on
            waiter.cancel()
            raise


class FairPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, its free connections kept in a `FairQueue`."""

    _queue_class = FairQueue[ConnectionPoolEntry]
