"""Rate limits: moving windows per user, per API key and per IP; sign-in back-off per address
and account; mails asked for (password resets, confirmations) per account and per IP.

Counts live in this process by default (`MemoryCounters`: plain dicts on the app's clock, no
locks and no threads, since the event loop runs one request at a time between awaits), or in
Redis when `SIZZLE_REDIS_URL` is set, so that several API replicas share them (the `limits`
library's storage, on Redis's clock). Going over a limit is a 429 with `Retry-After`.

Wrong passwords are counted per (address, account): after `sign_in_free_failures` of them,
that pair waits 1 s, then 2 s, 4 s, ... up to `sign_in_backoff_max_seconds` between tries,
until a right password clears it. Failures from other addresses never slow the owner's,
and asking for a password reset is limited on its own, never by wrong passwords.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage

from sizzle.clock import Clock, SystemClock
from sizzle.errors import RateLimited, Unauthorized
from sizzle.settings import Settings

log = structlog.get_logger(__name__)

FAILURES_KEPT_SECONDS = 24 * 3600  # wrong passwords are forgotten a day after the first
IN_FLIGHT_SECONDS = 60  # a check that never ended (a killed process) stops counting by then
SWEEP_SECONDS = 60.0  # how often memory counts drop the keys that have gone quiet
MAX_IDENTITY = 400  # an address from a proxy header is the caller's text: bound the keys
MAX_KEY = 1000


@dataclass(frozen=True)
class Limits:
    """What each kind of caller may do, as `limits` strings ("600/minute")."""

    per_user: RateLimitItem
    per_key: RateLimitItem
    per_ip: RateLimitItem
    sign_in_per_ip: RateLimitItem
    account_mail_per_account: RateLimitItem
    account_mail_per_ip: RateLimitItem

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            per_user=parse(settings.rate_limit_per_user),
            per_key=parse(settings.rate_limit_per_key),
            per_ip=parse(settings.rate_limit_per_ip),
            sign_in_per_ip=parse(settings.rate_limit_sign_in_per_ip),
            account_mail_per_account=parse(settings.rate_limit_account_mail_per_account),
            account_mail_per_ip=parse(settings.rate_limit_account_mail_per_ip),
        )


class Counters(Protocol):
    """Where counts are kept: this process, or Redis."""

    async def hit(self, key: str, limit: int, window: int) -> float:
        """Count one hit in the moving window; 0 if allowed, else seconds until one is."""

    async def add(self, key: str, amount: int, expiry: int) -> int:
        """Add to the count under `key` (kept `expiry` seconds from its first); the count."""

    async def count(self, key: str) -> int:
        """The count under `key`; 0 when there is none."""

    async def block(self, key: str, seconds: int) -> None:
        """Mark `key` blocked for `seconds` from now."""

    async def blocked_for(self, key: str) -> float:
        """Seconds left of a block on `key`; 0 when there is none."""

    async def clear(self, *keys: str) -> None: ...

    async def reset(self) -> None: ...


class MemoryCounters:
    """Counts in this process, on the app's clock. Each moving window is the times of its
    allowed hits, oldest first; idle keys are dropped by a sweep once a minute."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._windows: dict[str, tuple[int, deque[float]]] = {}
        self._counts: dict[str, tuple[int, float]] = {}  # key: (count, forgotten at)
        self._blocks: dict[str, float] = {}  # key: blocked until
        self._next_sweep = 0.0

    def _now(self) -> float:
        now = self.clock.now().timestamp()
        if now >= self._next_sweep:
            self._sweep(now)
        return now

    async def hit(self, key: str, limit: int, window: int) -> float:
        now = self._now()
        held = self._windows.get(key)
        if held is None:
            held = self._windows[key] = (window, deque())
        hits = held[1]
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return hits[0] + window - now
        hits.append(now)
        return 0.0

    async def add(self, key: str, amount: int, expiry: int) -> int:
        now = self._now()
        count, forgotten_at = self._counts.get(key, (0, now + expiry))
        if forgotten_at <= now:
            count, forgotten_at = 0, now + expiry
        count = max(0, count + amount)
        if count:
            self._counts[key] = (count, forgotten_at)
        else:
            self._counts.pop(key, None)
        return count

    async def count(self, key: str) -> int:
        count, forgotten_at = self._counts.get(key, (0, 0.0))
        return count if forgotten_at > self._now() else 0

    async def block(self, key: str, seconds: int) -> None:
        self._blocks[key] = self._now() + seconds

    async def blocked_for(self, key: str) -> float:
        until = self._blocks.get(key)
        return 0.0 if until is None else max(0.0, until - self._now())

    async def clear(self, *keys: str) -> None:
        for key in keys:
            self._windows.pop(key, None)
            self._counts.pop(key, None)
            self._blocks.pop(key, None)

    async def reset(self) -> None:
        self._windows.clear()
        self._counts.clear()
        self._blocks.clear()

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_SECONDS
        for key, (window, hits) in list(self._windows.items()):
            if not hits or hits[-1] <= now - window:
                del self._windows[key]
        for key, (_count, forgotten_at) in list(self._counts.items()):
            if forgotten_at <= now:
                del self._counts[key]
        for key, until in list(self._blocks.items()):
            if until <= now:
                del self._blocks[key]


class RedisCounters:
    """Counts in Redis, through the `limits` library's storage, shared by every replica."""

    def __init__(self, url: str) -> None:
        # `limits` names its async Redis storage async+redis://
        self.storage = RedisStorage(url if url.startswith("async+") else f"async+{url}")

    async def hit(self, key: str, limit: int, window: int) -> float:
        if await self.storage.acquire_entry(key, limit, window):
            return 0.0
        oldest, _count = await self.storage.get_moving_window(key, limit, window)
        return self._seconds_until(oldest + window)

    async def add(self, key: str, amount: int, expiry: int) -> int:
        return max(0, await self.storage.incr(key, expiry, amount))

    async def count(self, key: str) -> int:
        return max(0, await self.storage.get(key))

    async def block(self, key: str, seconds: int) -> None:
        await self.storage.clear(key)
        await self.storage.incr(key, seconds)

    async def blocked_for(self, key: str) -> float:
        if not await self.storage.get(key):
            return 0.0
        return self._seconds_until(await self.storage.get_expiry(key))

    async def clear(self, *keys: str) -> None:
        for key in keys:
            await self.storage.clear(key)

    async def reset(self) -> None:
        await self.storage.reset()

    @staticmethod
    def _seconds_until(moment: float) -> float:
        # Redis's windows and expiries run on the wall clock, not the app's
        return max(0.0, moment - time.time())


class RateLimiter:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.enabled = settings.rate_limits_enabled
        self.limits = Limits.from_settings(settings)
        self.free_failures = settings.sign_in_free_failures
        self.max_wait = settings.sign_in_backoff_max_seconds
        self.shared = bool(settings.redis_url)
        self._prefixes: dict[int, str] = {}
        self.counters: Counters = (
            RedisCounters(settings.redis_url)
            if settings.redis_url
            else MemoryCounters(clock or SystemClock())
        )

    async def hit(self, item: RateLimitItem, *identity: str, what: str) -> None:
        """Count one request against `item` for `identity`; RateLimited when over it."""
        if not self.enabled:
            return
        key = f"{self._key_prefix(item)}/{'/'.join(identity)}"[:MAX_KEY]
        wait = await self.counters.hit(key, item.amount, item.get_expiry())
        if wait > 0:
            self._refuse(f"too many {what}: the limit is {item}", wait, limit=str(item))

    def _key_prefix(self, item: RateLimitItem) -> str:
        prefix = self._prefixes.get(id(item))
        if prefix is None:  # made once per limit: the library's key_for is slow on a hot path
            prefix = self._prefixes[id(item)] = item.key_for()
        return prefix

    async def from_address(self, ip: str) -> None:
        await self.hit(self.limits.per_ip, "ip", ip, what="requests from this address")

    async def api_call(self, *, user_id: str, key_id: str | None) -> None:
        await self.hit(self.limits.per_user, "user", user_id, what="requests for this account")
        if key_id is not None:
            await self.hit(self.limits.per_key, "key", key_id, what="requests with this API key")

    async def sign_up_attempt(self, *, ip: str) -> None:
        await self.hit(self.limits.sign_in_per_ip, "sign-in-ip", ip, what="sign-up attempts")

    @asynccontextmanager
    async def password_attempt(self, *, email: str, ip: str) -> AsyncIterator[None]:
        """Around one check of an account's password: refused while this address must wait
        for this account; a wrong password (Unauthorized, invalid_credentials) is counted for
        the pair, a right one clears it."""
        if not self.enabled:
            yield
            return
        await self.hit(self.limits.sign_in_per_ip, "sign-in-ip", ip, what="sign-in attempts")
        pair = f"{ip[:MAX_IDENTITY]}/{email.strip().lower()[:MAX_IDENTITY]}"
        wait = await self.counters.blocked_for(f"sign-in-wait/{pair}")
        if wait > 0:
            self._refuse(
                "too many sign-in attempts with a wrong password for this account from your "
                "address",
                wait,
                limit="back-off",
                then="If you forgot the password, choose a new one with “Forgot your password?”.",
            )
        checking = f"sign-in-checking/{pair}"
        in_flight = await self.counters.add(checking, 1, IN_FLIGHT_SECONDS)
        try:
            # Attempts checked at once count against the free failures too: a burst sent
            # before any answer cannot slip past the back-off (one at a time beyond them).
            if in_flight > 1 and (
                await self.counters.count(f"sign-in-failures/{pair}") + in_flight
                > self.free_failures
            ):
                self._refuse(
                    "another sign-in for this account from your address is being checked",
                    1,
                    limit="one-at-a-time",
                )
            try:
                yield
            except Unauthorized as exc:
                if exc.code == "invalid_credentials":
                    await self._failed(pair)
                raise
            await self.counters.clear(f"sign-in-failures/{pair}", f"sign-in-wait/{pair}")
        finally:
            await self.counters.add(checking, -1, IN_FLIGHT_SECONDS)

    async def _failed(self, pair: str) -> None:
        failures = await self.counters.add(f"sign-in-failures/{pair}", 1, FAILURES_KEPT_SECONDS)
        if failures >= self.free_failures:
            wait = min(self.max_wait, 2 ** min(failures - self.free_failures, 30))
            await self.counters.block(f"sign-in-wait/{pair}", wait)
            log.info("sign_in.backing_off", failures=failures, wait=wait)

    async def account_mail(self, *, email: str, ip: str) -> None:
        """A password reset or confirmation mail asked for: limited per address and per
        account (whether it exists or not), never by wrong passwords."""
        await self.hit(self.limits.account_mail_per_ip, "mail-ip", ip, what="mails asked for")
        await self.hit(
            self.limits.account_mail_per_account,
            "mail-account",
            email.strip().lower(),
            what="mails asked for this account",
        )

    async def password_reset(self, *, ip: str) -> None:
        """A new password set with a mailed token: limited per address on its own, so that
        sign-in attempts from a shared address never block the way back in."""
        await self.hit(
            self.limits.account_mail_per_ip, "reset-ip", ip, what="password resets from here"
        )

    def _refuse(self, message: str, wait: float, *, limit: str, then: str = "") -> None:
        """Refuse with a sentence that says what happened and when to try again."""
        retry_after = max(1, math.ceil(wait))
        log.info("rate_limited", limit=limit, retry_after=retry_after)
        seconds = "1 second" if retry_after == 1 else f"{retry_after} seconds"
        sentence = f"{message[:1].upper()}{message[1:]}. Wait {seconds}, then try again."
        raise RateLimited(f"{sentence} {then}".rstrip(), retry_after=retry_after)

    async def reset(self) -> None:
        await self.counters.reset()
