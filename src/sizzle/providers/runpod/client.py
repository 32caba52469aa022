"""The RunPod GraphQL client: one POST to `{runpod_api_url}/graphql` per operation.

RunPod answers GraphQL errors with HTTP 200 and an `errors` list; this client turns them into
Sizzle's domain errors. Transport failures, 5xx, 401/403 and 429 are handled by ProviderHttp.
"""

from __future__ import annotations

import json
from typing import Any

from sizzle.errors import BadCredentials, NoCapacity, ProviderBadRequest, ProviderUnavailable
from sizzle.providers.http import ProviderHttp, json_body

NO_CAPACITY_TEXT = "no longer any instances available"
_AUTH_HINTS = ("unauthorized", "unauthenticated", "authentication", "api key", "forbidden")
_AUTH_CODES = ("UNAUTHENTICATED", "FORBIDDEN")


class PodNotFound(ProviderBadRequest):
    """RunPod does not know the pod (e.g. "pod not found to terminate")."""

    code = "provider_pod_not_found"


class Enum(str):
    """A GraphQL enum value: rendered bare (`ALL`), not as a string literal."""


def literal(value: Any) -> str:
    """A Python value as a GraphQL input literal; strings are escaped (JSON escapes are valid)."""
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {literal(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    raise TypeError(f"no GraphQL literal for {type(value).__name__}")


class RunPodClient:
    def __init__(self, *, api_key: str, api_url: str, timeout: float) -> None:
        self._http = ProviderHttp(
            provider="runpod",
            base_url=api_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    async def graphql(
        self, query: str, variables: dict[str, Any] | None = None, *, idempotent: bool = True
    ) -> dict[str, Any]:
        """The `data` of one GraphQL operation; pass idempotent=False for mutations."""
        body: dict[str, Any] = {"query": query}
        if variables:
            body["variables"] = variables
        response = await self._http.request("POST", "graphql", json=body, idempotent=idempotent)
        payload = json_body(response)
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            raise _error(errors)
        if response.status_code >= 400:
            raise ProviderBadRequest(f"runpod: HTTP {response.status_code}")
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise ProviderUnavailable("runpod: GraphQL answer without data")
        return data

    async def aclose(self) -> None:
        await self._http.aclose()


def _error(errors: Any) -> Exception:
    first = errors[0] if isinstance(errors, list) and errors else {}
    first = first if isinstance(first, dict) else {}
    message = str(first.get("message") or "unknown GraphQL error")
    extensions = first.get("extensions")
    code = str(extensions.get("code", "")) if isinstance(extensions, dict) else ""
    lowered = message.lower()
    if NO_CAPACITY_TEXT in lowered:
        return NoCapacity(f"runpod: {message}")
    if code in _AUTH_CODES or any(hint in lowered for hint in _AUTH_HINTS):
        return BadCredentials(f"runpod refused the API key: {message}")
    if "not found" in lowered and "pod" in lowered:
        return PodNotFound(f"runpod: {message}")
    return ProviderBadRequest(f"runpod: {message}")
