"""The database pool's line: checkouts that wait are served in the order they came, a
connection given back is never taken by a newcomer ahead of them, and one that gives up
(time out, cancelled) leaves the line without taking a connection with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from sizzle.db.database import Database
from sizzle.db.fair_pool import FairPool, FairQueue


def _engine(path: Path, poolclass: type[AsyncAdaptedQueuePool]) -> AsyncEngine:
    return create_async_engine(
        f"sqlite+aiosqlite:///{path}", poolclass=poolclass, pool_size=1, max_overflow=0
    )


@pytest.fixture
async def one_connection(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = _engine(tmp_path / "pool.db", FairPool)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _line_up(engine: AsyncEngine, order: list[str], names: list[str]) -> list[asyncio.Task]:
    """Checkouts that wait, one after the other, each noting when it got the connection."""

    async def use(name: str) -> None:
        async with engine.connect() as connection:
            order.append(name)
            await connection.execute(text("SELECT 1"))

    tasks = []
    for name in names:
        tasks.append(asyncio.create_task(use(name)))
        await asyncio.sleep(0.01)  # it is waiting for the connection held
    return tasks


async def _served_order(engine: AsyncEngine) -> list[str]:
    """Three checkouts wait for the one connection; its holder gives it back and at once
    asks for it again, ahead of them if the pool lets it."""
    order: list[str] = []
    held = await engine.connect()
    await held.execute(text("SELECT 1"))
    waiting = await _line_up(engine, order, ["first", "second", "third"])
    await held.close()
    async with engine.connect():
        order.append("came back")
    await asyncio.gather(*waiting)
    return order


async def test_waiting_checkouts_are_served_first_come_first_served(
    one_connection: AsyncEngine,
) -> None:
    assert await _served_order(one_connection) == ["first", "second", "third", "came back"]


async def test_sqlalchemys_own_pool_lets_a_newcomer_cut_in(tmp_path: Path) -> None:
    # why FairPool exists: the same sequence on the stock pool serves the newcomer first
    engine = _engine(tmp_path / "stock.db", AsyncAdaptedQueuePool)
    try:
        assert (await _served_order(engine))[0] == "came back"
    finally:
        await engine.dispose()


async def test_a_checkout_that_times_out_leaves_the_line(tmp_path: Path) -> None:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'timeout.db'}",
        poolclass=FairPool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.05,
    )
    try:
        held = await engine.connect()
        await held.execute(text("SELECT 1"))
        with pytest.raises(exc.TimeoutError):
            await engine.connect()
        await held.close()
        async with asyncio.timeout(2), engine.connect() as connection:  # not stuck behind it
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_a_waiter_cancelled_after_being_handed_a_connection_passes_it_on() -> None:
    line: FairQueue[str] = FairQueue(maxsize=1)
    first = asyncio.create_task(line._wait_in_line(None))
    second = asyncio.create_task(line._wait_in_line(None))
    await asyncio.sleep(0)  # both in line
    line.put_nowait("connection")  # handed to the first...
    first.cancel()  # ...which is cancelled before it runs
    async with asyncio.timeout(1):
        assert await second == "connection"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert line.empty()


async def test_a_waiter_cancelled_before_its_turn_is_skipped() -> None:
    line: FairQueue[str] = FairQueue(maxsize=1)
    gone = asyncio.create_task(line._wait_in_line(None))
    staying = asyncio.create_task(line._wait_in_line(None))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    line.put_nowait("connection")
    async with asyncio.timeout(1):
        assert await staying == "connection"


async def test_the_database_pools_with_it(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'sizzle.db'}")
    try:
        assert isinstance(db.engine.pool, FairPool)
    finally:
        await db.dispose()
