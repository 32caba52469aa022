"""Rate limits, with the `limits` library: moving windows per user, per API key, per IP, and
for sign-in attempts per account and per IP.

Counts live in memory by default (one process), or in Redis when `SIZZLE_REDIS_URL` is set,
so that several API replicas share them. Going over a limit is a 429 with `Retry-After`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from sizzle.errors import RateLimited
from sizzle.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Limits:
    """What each kind of caller may do, as `limits` strings ("600/minute")."""

    per_user: RateLimitItem
    per_key: RateLimitItem
    per_ip: RateLimitItem
    sign_in_per_account: RateLimitItem
    sign_in_per_ip: RateLimitItem

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            per_user=parse(settings.rate_limit_per_user),
            per_key=parse(settings.rate_limit_per_key),
            per_ip=parse(settings.rate_limit_per_ip),
            sign_in_per_account=parse(settings.rate_limit_sign_in_per_account),
            sign_in_per_ip=parse(settings.rate_limit_sign_in_per_ip),
        )


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limits_enabled
        self.limits = Limits.from_settings(settings)
        url = settings.redis_url
        # `limits` names its async Redis storage async+redis://
        storage = storage_from_string(
            f"async+{url}" if url and not url.startswith("async+") else url or "async+memory://"
        )
        assert isinstance(storage, Storage)  # noqa: S101 - an async+ URL gives an async storage
        self.storage = storage
        self.shared = bool(url)
        self._strategy = MovingWindowRateLimiter(self.storage)

    async def hit(self, item: RateLimitItem, *identity: str, what: str) -> None:
        """Count one request against `item` for `identity`; RateLimited when over it."""
        if not self.enabled:
            return
        if await self._strategy.hit(item, *identity):
            return
        reset, _remaining = await self._strategy.get_window_stats(item, *identity)
        retry_after = max(1, math.ceil(reset - time.time()))
        log.info("rate_limited", what=what, limit=str(item), retry_after=retry_after)
        raise RateLimited(
            f"too many {what}: the limit is {item}; try again in {retry_after} s",
            retry_after=retry_after,
        )

    async def from_address(self, ip: str) -> None:
        await self.hit(self.limits.per_ip, "ip", ip, what="requests from this address")

    async def api_call(self, *, user_id: str, key_id: str | None) -> None:
        await self.hit(self.limits.per_user, "user", user_id, what="requests for this account")
        if key_id is not None:
            await self.hit(self.limits.per_key, "key", key_id, what="requests with this API key")

    async def sign_up_attempt(self, *, ip: str) -> None:
        await self.hit(self.limits.sign_in_per_ip, "sign-in-ip", ip, what="sign-up attempts")

    async def sign_in_attempt(self, *, email: str, ip: str) -> None:
        """Every attempt counts, right or wrong: guessing is slowed per account and per IP."""
        await self.hit(self.limits.sign_in_per_ip, "sign-in-ip", ip, what="sign-in attempts")
        await self.hit(
            self.limits.sign_in_per_account,
            "sign-in-account",
            email.strip().lower(),
            what="sign-in attempts for this account",
        )

    async def reset(self) -> None:
        await self.storage.reset()
