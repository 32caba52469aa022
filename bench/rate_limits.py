"""Benchmark: the in-memory rate limiter on an API request's hot path (a per-address hit and a
per-user hit), against a floor and against the `limits` library's async memory storage that
Sizzle used before.

    python bench/rate_limits.py [--requests 20000] [--callers 200]

Each "request" makes the two hits and then yields to the event loop once, as a server's loop
would between requests, so that background work a storage schedules (the `limits` storage's
expiry sweeps, which hop to a worker thread with asyncio.to_thread) runs and is counted. The
floor is the same loop with the hits left out.

It prints one JSON line per limiter: {"limiter", "us_per_request", "floor_us", "thread_hops"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from sizzle.services.rate_limits import RateLimiter
from sizzle.settings import Settings

LIMIT = "100000000/minute"  # never reached: only the cost of counting is measured


async def _run(hit: Callable[[int], Awaitable[Any]], requests: int) -> float:
    started = time.perf_counter()
    for n in range(requests):
        await hit(n)
        await asyncio.sleep(0)
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--callers", type=int, default=200)
    args = parser.parse_args()
    callers = args.callers

    hops = 0
    real_to_thread = asyncio.to_thread

    async def counted_to_thread(*a: Any, **k: Any) -> Any:
        nonlocal hops
        hops += 1
        return await real_to_thread(*a, **k)

    asyncio.to_thread = counted_to_thread  # type: ignore[assignment]

    async def nothing(_n: int) -> None:
        return None

    item = parse(LIMIT)
    old = MovingWindowRateLimiter(MemoryStorage())

    async def old_hits(n: int) -> None:
        await old.hit(item, "ip", f"10.0.{n % callers // 256}.{n % 256}")
        await old.hit(item, "user", f"user-{n % callers}")

    new = RateLimiter(Settings(rate_limit_per_ip=LIMIT, rate_limit_per_user=LIMIT))

    async def new_hits(n: int) -> None:
        await new.from_address(f"10.0.{n % callers // 256}.{n % 256}")
        await new.api_call(user_id=f"user-{n % callers}", key_id=None)

    floor = await _run(nothing, args.requests)
    # Sizzle's first: the `limits` storage leaves expiry tasks running after its own turn.
    for name, hit in (("sizzle memory", new_hits), ("limits async memory (before)", old_hits)):
        hops = 0
        seconds = await _run(hit, args.requests)
        print(
            json.dumps(
                {
                    "limiter": name,
                    "us_per_request": round((seconds - floor) / args.requests * 1e6, 2),
                    "floor_us": round(floor / args.requests * 1e6, 2),
                    "thread_hops": hops,
                    "requests": args.requests,
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
