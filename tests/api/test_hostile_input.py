"""No 500 on any input (issue 13, finding 6), read off the app's own routes so that a route
added later is covered too: deeply nested JSON on every JSON body, a NUL in every field of
every page form and every page query, and header-derived values (a proxy's X-Forwarded-For,
the browser's name) too long for their columns. On both databases: PostgreSQL is the one
that refuses a NUL or an overlong value."""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi.routing import APIRoute
from sqlalchemy import select
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import AuditEvent
from sizzle.state import AppState
from sizzle.web.routes import PAGE_MODULES
from tests.helpers import PASSWORD, make_user
from tests.web.pages import csrf_of, sign_in

SOME_ID = "0123456789abcdef0123456789abcdef"


def _path(route: APIRoute) -> str:
    return re.sub(r"{[^}]+}", SOME_ID, route.path)


def _client(app: Any, **transport: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False, **transport),
        base_url="https://sizzle.test",
    )


async def test_deeply_nested_json_is_refused_on_every_json_route(
    state: AppState, db: Database, clock: FakeClock
) -> None:
    app = create_app(state=state, run_jobs=False)
    with_bodies = [
        (method.upper(), re.sub(r"{[^}]+}", SOME_ID, path))
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
        and "application/json" in operation["requestBody"].get("content", {})
        and path != "/api/v1/billing/webhook"  # unset here: a 503 (tests/payments has its own)
    ]
    # and the chat, which reads its body itself (the webhook's: tests/payments)
    with_bodies.append(("POST", "/v1/chat/completions"))
    assert len(set(with_bodies)) >= 10
    async with _client(app) as client:
        user = await make_user(db, now=clock.now(), is_admin=True)
        login = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}
        )
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for body in (
            b"[" * 100_000,
            b'{"messages": [{"role": "user", "content": ' + b"[" * 900 + b"]" * 900 + b"}]}",
        ):
            for method, path in with_bodies:
                response = await client.request(
                    method, path, content=body, headers={**auth, "Content-Type": "application/json"}
                )
                assert 400 <= response.status_code < 500, (method, path, response.text)


async def test_deep_chat_requests_are_refused_before_parsing(client: httpx.AsyncClient) -> None:
    from tests.helpers import sign_up

    auth = await sign_up(client)
    for depth in (65, 900, 100_000):
        body = b'{"messages": [' + b"[" * depth + b"]" * depth + b"]}"
        response = await client.post(
            "/v1/chat/completions",
            content=body,
            headers={**auth, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "too_deeply_nested"


async def test_a_nul_in_any_page_form_field_or_query_is_a_422(
    state: AppState, db: Database, clock: FakeClock
) -> None:
    app = create_app(state=state, run_jobs=False)
    async with _client(app) as browser:
        await sign_in(browser, db, clock=clock, is_admin=True)
        token = csrf_of(await browser.get("/account"))
        checked = 0
        for module in PAGE_MODULES:
            for route in module.router.routes:
                assert isinstance(route, APIRoute)
                if route.path == "/signout":
                    continue  # would end the session the rest of the test needs
                path = _path(route)
                if "POST" in route.methods:
                    fields = [param.alias for param in route.dependant.body_params]
                    for name in fields:
                        data = dict.fromkeys(fields, "1") | {name: "a\x00b"}
                        response = await browser.post(path, data={**data, "csrf_token": token})
                        assert response.status_code == 422, (route.path, name, response.text[:300])
                        checked += 1
                if "GET" in route.methods:
                    for param in route.dependant.query_params:
                        response = await browser.get(path, params={param.alias: "a\x00b"})
                        assert response.status_code == 422, (route.path, param.alias)
                        checked += 1
        assert checked > 30


async def test_a_nul_in_any_api_query_is_never_a_500(
    state: AppState, db: Database, clock: FakeClock
) -> None:
    app = create_app(state=state, run_jobs=False)
    queries = [
        (re.sub(r"{[^}]+}", SOME_ID, path), parameter["name"])
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if method == "get"
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query"
    ]
    assert len(queries) > 5
    async with _client(app) as client:
        user = await make_user(db, now=clock.now(), is_admin=True)
        login = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}
        )
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for path, name in queries:
            response = await client.get(path, params={name: "a\x00b"}, headers=auth)
            assert response.status_code < 500, (path, name, response.text)


async def test_a_long_forwarded_address_and_browser_name_are_bounded_before_storage(
    state: AppState, db: Database, clock: FakeClock
) -> None:
    """uvicorn --proxy-headers puts the X-Forwarded-For text where the client address goes."""
    user = await make_user(db, now=clock.now())
    app = ProxyHeadersMiddleware(create_app(state=state, run_jobs=False), trusted_hosts="*")
    async with _client(app) as client:
        for forwarded, agent in (
            ("x" * 100, "a" * 5000),
            ("2001:db8::1" + ":" * 80, "Mozilla"),
            ("203.0.113.9", "b" * 400),
        ):
            for password in (PASSWORD, "wrong password"):
                response = await client.post(
                    "/api/v1/auth/login",
                    json={"email": user.email, "password": password},
                    headers={"X-Forwarded-For": forwarded, "User-Agent": agent},
                )
                assert response.status_code in (200, 401), response.text
    async with db.read() as tx:
        rows = (await tx.execute(select(AuditEvent.ip, AuditEvent.user_agent))).all()
    assert rows and all(len(ip or "") <= 64 and len(agent or "") <= 300 for ip, agent in rows)
    assert ("203.0.113.9", "b" * 300) in rows  # a real address is kept, the name cut
    assert not any(ip and "x" in ip for ip, _ in rows)  # text that is no address is not
