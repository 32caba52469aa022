"""The Vast.ai REST client: search, rent, show, start/stop and destroy (API v0), and the
paged instance listing (API v1: v0's `instances/?owner=me` answers 410 for newer accounts).

Every call goes through ProviderHttp (timeouts, retries of safe calls, 429 waits, 401).
Vast answers errors as `{"success": false, "error": code, "msg": text}`; this module turns
those into Sizzle's errors: `auth_error` (401) is BadCredentials; renting an ask that is gone
(`no_such_ask`, 404 or 410) or refused to us (403) is NoCapacity for that offer alone;
`not_found`/`no_such_instance` is InstanceGone; anything else ProviderBadRequest.
"""

from __future__ import annotations

import asyncio
import re
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
    parse_page,
    parse_result,
)

log = structlog.get_logger(__name__)

_GONE_CODES = frozenset({"not_found", "no_such_instance"})
# Vast asks a minimum interval between calls to one endpoint ("endpoint threshold=2.0") and
# sends no Retry-After: wait a little longer each time, a few seconds in all.
RATE_LIMIT_WAITS = (1.0, 2.0, 3.0)
PAGE_SIZE = 25  # the most rows the v1 listing returns per page
MAX_PAGES = 400  # 10,000 instances: a cursor that never ends is a broken answer, not a loop


class InstanceGone(NotFound):
    """Vast no longer knows the instance."""

    code = "instance_gone"


class OfferRefused(NoCapacity):
    """Vast will not rent this ask to us (403): skip the offer, the key is fine."""

    code = "offer_refused"


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
            # 401 auth_error is the key; a 403 concerns what was asked for (see `rent`)
            credential_statuses=frozenset({401}),
            rate_limit_waits=RATE_LIMIT_WAITS,
        )
        self._v1_instances = f"{_v1_base(base_url)}/instances/"

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
        if refused:
            _check_rent(response, ask_id, result)
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
        """Every instance of this account: `GET /api/v1/instances/`, page after page.

        The SDK sends the answer's `next_token` back as `after_token`; the published spec names
        the parameter `next_token`. Both carry the same cursor, so both are sent.
        """
        found: list[VastInstance] = []
        params: dict[str, Any] = {
            "limit": PAGE_SIZE,
            "order_by": '[{"col": "id", "dir": "asc"}]',
            "select_filters": "{}",
        }
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            response = await self._http.request("GET", self._v1_instances, params=params)
            _check(response, "list instances")
            page, token = parse_page(json_body(response))
            found.extend(page)
            if token is None:
                return found
            if token in seen:
                raise ProviderUnavailable("vast: the instance listing repeats a page cursor")
            seen.add(token)
            params = {**params, "after_token": token, "next_token": token}
        raise ProviderUnavailable(f"vast: the instance listing runs past {MAX_PAGES} pages")

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


def _v1_base(base_url: str) -> str:
    """The v1 API beside the configured v0 base (`.../api/v0` -> `.../api/v1`)."""
    base = base_url.rstrip("/")
    return re.sub(r"/v0$", "/v1", base) if base.endswith("/v0") else base


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
    message = f"vast {action}: {_detail(response, result)}"
    if code == "auth_error":
        raise BadCredentials(message)
    if code in _GONE_CODES or response.status_code == 404:
        raise InstanceGone(message)
    if response.status_code == 403:
        raise BadCredentials(message)  # the key may not do this at all (a scoped key)
    raise ProviderBadRequest(message)


def _check_rent(response: httpx.Response, ask_id: str, result: VastResult) -> None:
    """Raise the Sizzle error for a refused rent: an ask that is gone or not for us is no
    capacity (the next offer is tried, the provider stays on); anything else is ours to fix."""
    code = (result.error or "").lower()
    message = f"vast rent of offer {ask_id}: {_detail(response, result)}"
    if code == "auth_error":
        raise BadCredentials(message)
    if code == "no_such_ask" or response.status_code in (404, 410):
        raise NoCapacity(message)
    if response.status_code == 403:
        raise OfferRefused(message)
    raise ProviderBadRequest(message)


def _detail(response: httpx.Response, result: VastResult) -> str:
    """Vast's message, with its error code in front where the message leaves it out."""
    text = result.msg or result.message or response.text[:200] or f"HTTP {response.status_code}"
    return f"{result.error}: {text}" if result.error and result.error not in text else text
