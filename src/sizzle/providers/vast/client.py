"""The Vast.ai REST client (API v0): search, rent, show, list, start/stop and destroy.

Every call goes through ProviderHttp (timeouts, retries of safe calls, 429 waits, 401/403).
Vast answers errors as `{"success": false, "error": code, "msg": text}`; this module turns
those codes into Sizzle's errors: `no_such_ask` is NoCapacity, `auth_error` BadCredentials,
`not_found`/`no_such_instance` InstanceGone, anything else ProviderBadRequest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import structlog

from sizzle.errors import (
    BadCredentials,
    NoCapacity,
    NotFound,
    ProviderBadRequest,
    ProviderUnavailable,
)
from sizzle.providers.http import ProviderHttp, json_body
from sizzle.providers.vast.models import (
    VastInstance,
    VastOffer,
    VastResult,
    parse_instances,
    parse_offers,
    parse_result,
)

log = structlog.get_logger(__name__)

_GONE_CODES = frozenset({"not_found", "no_such_instance"})


class InstanceGone(NotFound):
    """Vast no longer knows the instance."""

    code = "instance_gone"


class VastClient:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: float = 10,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = ProviderHttp(
            provider="vast",
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            sleep=sleep,
        )

    async def search_offers(self, query: dict[str, Any]) -> list[VastOffer]:
        """`POST bundles/` with Vast's filter body; a read, so safe to repeat."""
        response = await self._http.request("POST", "bundles/", json=query, idempotent=True)
        _check(response, "search offers")
        return parse_offers(json_body(response))

    async def rent(self, ask_id: str, body: dict[str, Any]) -> int:
        """`PUT asks/{id}/`: the new instance's id, or NoCapacity when the offer is gone.

        Not repeated on failure: a second rent could create a second instance.
        """
        response = await self._http.request(
            "PUT", f"asks/{_numeric(ask_id)}/", json=body, idempotent=False
        )
        result = parse_result(_maybe_json(response))
        refused = not response.is_success or result.success is False
        if refused and result.new_contract is not None:
            # Vast may create the instance and still refuse (a stopped spot instance): undo it.
            log.warning("vast.rent_refused_with_instance", instance_id=result.new_contract)
            await self.destroy(result.new_contract)
            raise NoCapacity(f"vast refused offer {ask_id}: {result.text}")
        _check(response, "rent", result)
        if result.new_contract is None:
            raise ProviderUnavailable("vast: rent answered without new_contract")
        return result.new_contract

    async def show(self, instance_id: int | str) -> VastInstance | None:
        """`GET instances/{id}/`, or None when Vast no longer knows the instance."""
        response = await self._http.request("GET", f"instances/{_numeric(instance_id)}/")
        try:
            _check(response, "show instance")
        except InstanceGone:
            return None
        instances = parse_instances(json_body(response))
        wanted = int(_numeric(instance_id))
        return next((i for i in instances if i.id == wanted), None)

    async def list_instances(self) -> list[VastInstance]:
        """`GET instances/?owner=me`: every instance of this account."""
        response = await self._http.request("GET", "instances/", params={"owner": "me"})
        _check(response, "list instances")
        return parse_instances(json_body(response))

    async def set_state(self, instance_id: int | str, state: str) -> None:
        """`PUT instances/{id}/ {"state": "running"|"stopped"}`; InstanceGone if it is gone."""
        response = await self._http.request(
            "PUT", f"instances/{_numeric(instance_id)}/", json={"state": state}, idempotent=True
        )
        _check(response, f"set state {state}")

    async def destroy(self, instance_id: int | str) -> None:
        """`DELETE instances/{id}/`; silent when the instance is already gone."""
        response = await self._http.request("DELETE", f"instances/{_numeric(instance_id)}/")
        try:
            _check(response, "destroy")
        except InstanceGone:
            return

    async def aclose(self) -> None:
        await self._http.aclose()


def _numeric(value: int | str) -> str:
    text = str(value)
    if not text.isdigit():
        raise ProviderBadRequest(f"vast ids are numbers, not {text!r}")
    return text


def _maybe_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _check(response: httpx.Response, action: str, result: VastResult | None = None) -> None:
    """Raise the Sizzle error for a refused call; return quietly for a successful one."""
    if result is None:
        result = parse_result(_maybe_json(response))
    if response.is_success and result.success is not False:
        return
    code = (result.error or "").lower()
    detail = result.msg or result.message or response.text[:200] or f"HTTP {response.status_code}"
    message = f"vast {action}: {detail}"
    if code == "auth_error":
        raise BadCredentials(message)
    if code == "no_such_ask" or response.status_code == 410:
        raise NoCapacity(message)
    if code in _GONE_CODES or response.status_code == 404:
        raise InstanceGone(message)
    raise ProviderBadRequest(message)
