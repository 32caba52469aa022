"""The Lambda Cloud API client: `data` envelopes in, Sizzle's domain errors out.

Transport failures, 5xx, 401/403 and 429 are handled by ProviderHttp. What is left are
Lambda's own error bodies, `{"error": {"code", "message", "suggestion"}}`, mapped by code:
capacity and quota refusals are NoCapacity, key problems BadCredentials, a missing object
is `LambdaGone`, anything else Lambda refuses is ProviderBadRequest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from sizzle.errors import BadCredentials, NoCapacity, ProviderBadRequest, ProviderUnavailable
from sizzle.providers.http import ProviderHttp, json_body
from sizzle.providers.lambdalabs.models import (
    ErrorDetail,
    InstanceTypeEntry,
    LambdaInstance,
    LaunchResult,
    SshKey,
    TerminateResult,
)

T = TypeVar("T")

PROVIDER = "lambda"

_NO_CAPACITY = {"instance-operations/launch/insufficient-capacity", "global/quota-exceeded"}
_BAD_KEY = {"global/invalid-api-key", "global/account-inactive"}
_GONE = "global/object-does-not-exist"


_TYPES = TypeAdapter(dict[str, InstanceTypeEntry])
_INSTANCES = TypeAdapter(list[LambdaInstance])
_INSTANCE = TypeAdapter(LambdaInstance)
_LAUNCH = TypeAdapter(LaunchResult)
_TERMINATE = TypeAdapter(TerminateResult)
_KEYS = TypeAdapter(list[SshKey])
_KEY = TypeAdapter(SshKey)


class LambdaGone(Exception):
    """The object asked for does not exist (any more) at Lambda."""


class LambdaClient:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
        self.http = ProviderHttp(
            provider=PROVIDER,
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            **extra,
        )

    async def instance_types(self) -> dict[str, InstanceTypeEntry]:
        return _parse(_TYPES, await self._call("GET", "instance-types"), "instance-types")

    async def instances(self) -> list[LambdaInstance]:
        return _parse(_INSTANCES, await self._call("GET", "instances"), "instances")

    async def instance(self, instance_id: str) -> LambdaInstance:
        """The instance, or LambdaGone."""
        return _parse(_INSTANCE, await self._call("GET", f"instances/{instance_id}"), "instance")

    async def launch(
        self, *, region: str, instance_type: str, ssh_key: str, name: str
    ) -> list[str]:
        body = {
            "region_name": region,
            "instance_type_name": instance_type,
            "ssh_key_names": [ssh_key],
            "file_system_names": [],
            "quantity": 1,
            "name": name,
        }
        # not idempotent: a launch repeated after a lost answer could rent two GPUs
        data = await self._call("POST", "instance-operations/launch", json=body, idempotent=False)
        return _parse(_LAUNCH, data, "launch").instance_ids

    async def terminate(self, instance_ids: list[str]) -> list[LambdaInstance]:
        # terminating twice is harmless: safe to retry
        data = await self._call(
            "POST",
            "instance-operations/terminate",
            json={"instance_ids": instance_ids},
            idempotent=True,
        )
        return _parse(_TERMINATE, data, "terminate").terminated_instances

    async def ssh_keys(self) -> list[SshKey]:
        return _parse(_KEYS, await self._call("GET", "ssh-keys"), "ssh-keys")

    async def add_ssh_key(self, name: str, public_key: str) -> SshKey:
        """Register the public half of a pair Sizzle holds (Lambda then makes none)."""
        body = {"name": name, "public_key": public_key}
        # adding twice fails on the name, harmlessly: safe to retry
        data = await self._call("POST", "ssh-keys", json=body, idempotent=True)
        return _parse(_KEY, data, "ssh-keys")

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """The `data` of a successful answer (still unparsed)."""
        response = await self.http.request(method, path, json=json, idempotent=idempotent)
        if response.status_code >= 300:
            raise_for_error(response)
        body = json_body(response)
        if not isinstance(body, dict) or "data" not in body:
            raise ProviderUnavailable(f"lambda: {method} {path} answered without `data`")
        return body["data"]


def _parse(adapter: TypeAdapter[T], data: Any, what: str) -> T:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise ProviderUnavailable(
            f"lambda: unexpected {what} answer ({exc.error_count()} errors)"
        ) from exc


def raise_for_error(response: httpx.Response) -> None:
    """Turn a Lambda error answer into a domain error (always raises)."""
    try:
        body = response.json()
        error = ErrorDetail.model_validate(body["error"])
    except (ValueError, KeyError, TypeError, ValidationError):
        error = ErrorDetail(code="", message=response.text[:200])
    text = error.message or error.code or f"HTTP {response.status_code}"
    if error.suggestion:
        text = f"{text} ({error.suggestion})"
    if error.code in _NO_CAPACITY:
        raise NoCapacity(f"lambda: {text}")
    if error.code in _BAD_KEY:
        raise BadCredentials(f"lambda: {text}")
    # only Lambda's own code means gone: a bare 404 (a wrong base URL) must not read as
    # "every instance vanished"
    if error.code == _GONE:
        raise LambdaGone(text)
    raise ProviderBadRequest(f"lambda: {error.code or response.status_code}: {text}")
