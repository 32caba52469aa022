"""The RunPod client: pods through the REST API (v1), prices through GraphQL.

RunPod's GraphQL API is deprecated (retired early 2027), so every pod operation uses REST:
`POST /pods`, `GET /pods`, `GET /pods/{id}`, `POST /pods/{id}/stop|start`, `DELETE
/pods/{id}`. The REST API publishes no GPU types or prices, so the price lookup alone still
asks GraphQL (`gpuTypes`); it moves when RunPod offers prices over REST.

Transport failures, 5xx, 401/403 and 429 are handled by ProviderHttp. A missing pod is 404
(PodGone); an answer carrying RunPod's "no longer any instances available" text is NoCapacity;
GraphQL answers its errors with HTTP 200 and an `errors` list.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from sizzle.errors import (
    BadCredentials,
    NoCapacity,
    NotFound,
    ProviderBadRequest,
    ProviderUnavailable,
)
from sizzle.providers.http import ProviderHttp, json_body
from sizzle.providers.runpod.models import Pod, parse_pod, parse_pods

NO_CAPACITY_TEXT = "no longer any instances available"
_AUTH_HINTS = ("unauthorized", "unauthenticated", "authentication", "api key", "forbidden")


class PodGone(NotFound):
    """RunPod does not know the pod (404)."""

    code = "provider_pod_not_found"


class RunPodClient:
    def __init__(
        self,
        *,
        api_key: str,
        rest_url: str,
        graphql_url: str,
        timeout: float = 10,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = ProviderHttp(
            provider="runpod",
            base_url=rest_url,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            sleep=sleep,
        )
        self._graphql_url = graphql_url.rstrip("/") + "/graphql"

    async def create_pod(self, body: dict[str, Any]) -> Pod:
        """`POST /pods`; not repeated on failure (a second create is a second pod)."""
        response = await self._http.request("POST", "pods", json=body, idempotent=False)
        _check(response, "create pod")
        pod = parse_pod(json_body(response))
        if pod is None:
            raise ProviderUnavailable("runpod: create pod answered without a pod")
        return pod

    async def get_pod(self, pod_id: str) -> Pod | None:
        """`GET /pods/{id}`, or None when RunPod no longer knows the pod."""
        response = await self._http.request("GET", f"pods/{_segment(pod_id)}")
        try:
            _check(response, "get pod")
        except PodGone:
            return None
        return parse_pod(json_body(response))

    async def list_pods(self) -> list[Pod]:
        """`GET /pods`: every pod of the account."""
        response = await self._http.request("GET", "pods")
        _check(response, "list pods")
        return parse_pods(json_body(response))

    async def stop_pod(self, pod_id: str) -> None:
        """`POST /pods/{id}/stop`; stopping twice is harmless, so it may be repeated."""
        response = await self._http.request(
            "POST", f"pods/{_segment(pod_id)}/stop", idempotent=True
        )
        _check(response, "stop pod")

    async def start_pod(self, pod_id: str) -> Pod | None:
        """`POST /pods/{id}/start`: the pod as answered, where the answer holds one."""
        response = await self._http.request(
            "POST", f"pods/{_segment(pod_id)}/start", idempotent=True
        )
        _check(response, "start pod")
        return parse_pod(_maybe_json(response))

    async def delete_pod(self, pod_id: str) -> None:
        """`DELETE /pods/{id}`; silent when the pod is already gone."""
        response = await self._http.request("DELETE", f"pods/{_segment(pod_id)}")
        try:
            _check(response, "delete pod")
        except PodGone:
            return

    async def graphql(self, query: str) -> dict[str, Any]:
        """The `data` of one GraphQL query (reads only: prices)."""
        response = await self._http.request(
            "POST", self._graphql_url, json={"query": query}, idempotent=True
        )
        payload = json_body(response)
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            raise _graphql_error(errors)
        if response.status_code >= 400:
            raise ProviderBadRequest(f"runpod: HTTP {response.status_code}")
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise ProviderUnavailable("runpod: GraphQL answer without data")
        return data

    async def aclose(self) -> None:
        await self._http.aclose()


def _segment(pod_id: str) -> str:
    """A pod id as one path segment: RunPod's ids are short alphanumerics."""
    if not pod_id or not pod_id.isalnum():
        raise ProviderBadRequest(f"runpod: not a pod id: {pod_id!r}")
    return pod_id


def _maybe_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(response: httpx.Response) -> str:
    """RunPod's error text: `{"error": ...}` (v1), or a problem+json `detail`/`title`."""
    body = _maybe_json(response)
    if isinstance(body, dict):
        for key in ("error", "detail", "message", "title"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return response.text[:200] or f"HTTP {response.status_code}"


def _check(response: httpx.Response, action: str) -> None:
    """Raise the Sizzle error for a refused call; return quietly for a successful one."""
    if response.is_success:
        return
    message = f"runpod {action}: {_message(response)}"
    if NO_CAPACITY_TEXT in message.lower():
        raise NoCapacity(message)
    if response.status_code == 404:
        raise PodGone(message)
    raise ProviderBadRequest(message)


def _graphql_error(errors: Any) -> Exception:
    first = errors[0] if isinstance(errors, list) and errors else {}
    first = first if isinstance(first, dict) else {}
    message = str(first.get("message") or "unknown GraphQL error")
    extensions = first.get("extensions")
    code = str(extensions.get("code", "")) if isinstance(extensions, dict) else ""
    if code in ("UNAUTHENTICATED", "FORBIDDEN") or any(
        hint in message.lower() for hint in _AUTH_HINTS
    ):
        return BadCredentials(f"runpod refused the API key: {message}")
    return ProviderBadRequest(f"runpod: {message}")
