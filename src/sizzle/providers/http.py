"""The HTTP client every provider plugin builds on: timeouts, safe retries, 429s, error mapping.

Plugins turn each provider's own error shapes into Sizzle's domain errors; this module handles
what is common: transport failures and 5xx answers become ProviderUnavailable, 401/403 become
BadCredentials (a plugin may keep 403 for itself), and 429 is waited out (Retry-After when
given, else a short backoff). Only calls that are safe to repeat (`idempotent=True`, the
default for GET and DELETE) are retried after a failure; a 429 was refused, not executed, so
any call is sent again after one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import structlog

from sizzle.errors import BadCredentials, ProviderUnavailable

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 3
BACKOFF_SECONDS = (0.5, 1.0, 2.0)
MAX_RETRY_AFTER_SECONDS = 10.0


class ProviderHttp:
    """An httpx client bound to one provider's base URL and credentials."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        credential_statuses: frozenset[int] = frozenset({401, 403}),
        rate_limit_waits: tuple[float, ...] = BACKOFF_SECONDS[:2],
    ) -> None:
        """`credential_statuses`: the answers that mean the key itself is refused;
        `rate_limit_waits`: the seconds waited before each resend of a 429 without Retry-After
        (one resend per entry)."""
        self.provider = provider
        self._sleep = sleep
        self._credential_statuses = credential_statuses
        self._rate_limit_waits = rate_limit_waits
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers or {},
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """The response of the first attempt that is not a 429, a 5xx or a transport error.

        4xx answers other than 401/403/429 are returned for the plugin to interpret.
        """
        retry = idempotent if idempotent is not None else method in ("GET", "DELETE", "HEAD")
        last_error = "no attempt made"
        failures = throttled = 0
        while True:
            try:
                response = await self._client.request(
                    method, path.lstrip("/"), json=json, params=params
                )
            except httpx.TimeoutException as exc:
                last_error = f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last_error = f"unreachable ({type(exc).__name__})"
            else:
                if response.status_code in self._credential_statuses:
                    raise BadCredentials(f"{self.provider} refused the API key")
                if response.status_code == 429:  # refused, not executed: safe to send again
                    last_error = "rate limited (429)"
                    if throttled == len(self._rate_limit_waits):
                        break
                    await self._sleep(_retry_after(response, self._rate_limit_waits[throttled]))
                    throttled += 1
                    continue
                if response.status_code < 500:
                    return response
                last_error = f"HTTP {response.status_code}"
            failures += 1
            if not retry or failures == MAX_ATTEMPTS:
                break
            log.info("provider.retry", provider=self.provider, path=path, error=last_error)
            await self._sleep(_backoff(failures - 1))
        raise ProviderUnavailable(f"{self.provider}: {last_error}")

    async def aclose(self) -> None:
        await self._client.aclose()


def _retry_after(response: httpx.Response, default: float) -> float:
    header = response.headers.get("retry-after")
    try:
        return min(float(header), MAX_RETRY_AFTER_SECONDS) if header else default
    except ValueError:
        return default


def _backoff(attempt: int) -> float:
    return BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]


def json_body(response: httpx.Response) -> Any:
    """The response's JSON, or ProviderUnavailable when it is not JSON (a broken answer)."""
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderUnavailable(f"malformed JSON from {response.request.url.host}") from exc
