"""The HTTP client of one Ollama node (`/api/version`, `/api/tags`, `/api/ps`, `/api/pull`,
`/api/generate` for load and unload), built on ProviderHttp."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from sizzle.errors import ProviderBadRequest, ProviderUnavailable
from sizzle.providers.http import ProviderHttp, json_body
from sizzle.providers.ollama.models import (
    LoadedModel,
    LocalModel,
    PsResponse,
    PullProgress,
    TagsResponse,
    VersionResponse,
    parse,
)

# Loading a large model into GPU memory can take minutes; the answer comes only once it is loaded.
LOAD_TIMEOUT_SECONDS = 900.0


class OllamaClient:
    """One node's Ollama API. Close it with `aclose()` (or use it as an async context manager)."""

    def __init__(
        self,
        base_url: str,
        *,
        node: str = "ollama",
        timeout: float = 10,
        load_timeout: float = LOAD_TIMEOUT_SECONDS,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`headers`: sent on every request (the node's token, where it has one)."""
        self.node = node
        self._label = f"ollama node {node}"
        # 401/403 are this node's answer (its proxy refusing its token), not a provider-wide
        # key: `_check` makes them the node's failure, so that other nodes are still tried.
        shared: dict[str, Any] = {
            "provider": self._label,
            "base_url": base_url,
            "headers": headers,
            "transport": transport,
            "credential_statuses": frozenset(),
        }
        self._http = ProviderHttp(timeout=timeout, **shared)
        # Load answers only after the model is in memory: its own, longer read timeout.
        self._slow = ProviderHttp(timeout=max(timeout, load_timeout), **shared)

    async def __aenter__(self) -> OllamaClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._slow.aclose()

    async def version(self, *, retry: bool = True) -> str:
        """The node's Ollama version; `retry=False` for a quick single-attempt probe."""
        response = await self._http.request("GET", "api/version", idempotent=retry)
        return parse(VersionResponse, self._ok(response), what="version").version

    async def tags(self) -> list[LocalModel]:
        response = await self._http.request("GET", "api/tags")
        return parse(TagsResponse, self._ok(response), what="tags").models

    async def ps(self) -> list[LoadedModel]:
        response = await self._http.request("GET", "api/ps")
        return parse(PsResponse, self._ok(response), what="ps").models

    async def load(self, model: str) -> None:
        """Load `model` into memory (a generate request with no prompt)."""
        response = await self._slow.request(
            "POST", "api/generate", json={"model": model}, idempotent=False
        )
        self._check(response)

    async def unload(self, model: str) -> None:
        """Unload `model` from memory now (`keep_alive: 0`)."""
        response = await self._http.request(
            "POST",
            "api/generate",
            json={"model": model, "keep_alive": 0},
            idempotent=True,
        )
        self._check(response)

    async def pull(self, model: str) -> AsyncIterator[PullProgress]:
        """The progress lines of pulling `model`; a line with "error" raises ProviderUnavailable."""
        async for line in self._stream("api/pull", {"model": model, "stream": True}):
            if "error" in line:
                raise ProviderUnavailable(f"{self._label}: pull of {model} failed: {line['error']}")
            yield parse(PullProgress, line, what="pull progress")

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST `body` and yield each NDJSON line of the answer as it arrives (no retries).

        ProviderHttp.request reads whole answers; this is its streaming sibling, with the same
        error mapping: transport failures and 5xx are ProviderUnavailable.
        """
        client = self._http._client  # same base URL, headers and timeouts as every other call
        try:
            async with client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._check(response)
                async for raw in response.aiter_lines():
                    if not raw.strip():
                        continue
                    try:
                        line = json.loads(raw)
                    except ValueError as exc:
                        raise ProviderUnavailable(f"{self._label}: malformed stream line") from exc
                    if not isinstance(line, dict):
                        raise ProviderUnavailable(f"{self._label}: malformed stream line")
                    yield line
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(f"{self._label}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"{self._label}: unreachable ({type(exc).__name__})") from exc

    def _ok(self, response: httpx.Response) -> Any:
        """The JSON body of a 2xx answer; Ollama's `{"error": ...}` becomes a domain error."""
        self._check(response)
        return json_body(response)

    def _check(self, response: httpx.Response) -> None:
        """Nothing for a 2xx answer (its body unread: a load may answer in NDJSON)."""
        if response.status_code < 400:
            return
        try:
            message = str(response.json().get("error") or response.text)
        except (ValueError, AttributeError):
            message = response.text[:200]
        if response.status_code in (401, 403):
            raise ProviderUnavailable(
                f"{self._label} refused Sizzle (HTTP {response.status_code}): check the "
                "node's token in SIZZLE_OLLAMA_NODES"
            )
        if response.status_code < 500:
            raise ProviderBadRequest(f"{self._label}: HTTP {response.status_code}: {message}")
        raise ProviderUnavailable(f"{self._label}: HTTP {response.status_code}: {message}")
