"""The shared provider HTTP client against a real loopback server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request, Response

from sizzle.errors import BadCredentials, ProviderUnavailable
from sizzle.providers.http import ProviderHttp, json_body
from tests.providers.fakes.server import serve

calls: dict[str, int] = {}


def _app() -> FastAPI:
    app = FastAPI()

    @app.api_route("/flaky/{status}", methods=["GET", "POST"])
    async def flaky(status: int, request: Request) -> Response:
        key = f"{request.method} {status}"
        calls[key] = calls.get(key, 0) + 1
        if calls[key] < 3:
            return Response("busy", status_code=status, headers={"Retry-After": "0"})
        return Response('{"ok": true}', media_type="application/json")

    @app.get("/status/{status}")
    async def fixed(status: int) -> Response:
        return Response("not json", status_code=status)

    return app


@pytest.fixture
def base_url() -> Iterator[str]:
    calls.clear()
    with serve(_app()) as url:
        yield url


async def _nap(_seconds: float) -> None:
    return None


def client(base_url: str) -> ProviderHttp:
    return ProviderHttp(provider="fake", base_url=base_url, timeout=5, sleep=_nap)


async def test_safe_calls_are_retried_through_5xx(base_url: str) -> None:
    response = await client(base_url).request("GET", "flaky/503")
    assert json_body(response) == {"ok": True}
    assert calls["GET 503"] == 3


async def test_unsafe_calls_are_not_retried_after_a_5xx(base_url: str) -> None:
    with pytest.raises(ProviderUnavailable, match="HTTP 502"):
        await client(base_url).request("POST", "flaky/502")
    assert calls["POST 502"] == 1


async def test_a_429_is_waited_out_even_for_unsafe_calls(base_url: str) -> None:
    response = await client(base_url).request("POST", "flaky/429")
    assert response.status_code == 200
    assert calls["POST 429"] == 3


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_keys_are_bad_credentials(base_url: str, status: int) -> None:
    with pytest.raises(BadCredentials):
        await client(base_url).request("GET", f"status/{status}")


async def test_a_plugin_may_keep_403_for_itself(base_url: str) -> None:
    http = ProviderHttp(
        provider="fake", base_url=base_url, sleep=_nap, credential_statuses=frozenset({401})
    )
    assert (await http.request("GET", "status/403")).status_code == 403
    with pytest.raises(BadCredentials):
        await http.request("GET", "status/401")


async def test_429s_are_resent_once_per_wait_given(base_url: str) -> None:
    waited: list[float] = []

    async def nap(seconds: float) -> None:
        waited.append(seconds)

    http = ProviderHttp(provider="fake", base_url=base_url, sleep=nap, rate_limit_waits=(1.0,))
    with pytest.raises(ProviderUnavailable, match="429"):
        await http.request("POST", "flaky/429")
    assert calls["POST 429"] == 2
    assert waited == [0.0]  # the Retry-After given wins over the plugin's own wait


async def test_other_4xx_answers_are_left_to_the_plugin(base_url: str) -> None:
    response = await client(base_url).request("GET", "status/404")
    assert response.status_code == 404


async def test_malformed_json_is_a_provider_failure(base_url: str) -> None:
    response = await client(base_url).request("GET", "status/200")
    with pytest.raises(ProviderUnavailable, match="malformed JSON"):
        json_body(response)


async def test_an_unreachable_provider_is_unavailable() -> None:
    from tests.providers.fakes.server import free_port

    with pytest.raises(ProviderUnavailable, match="unreachable"):
        await client(f"http://127.0.0.1:{free_port()}").request("GET", "x")
