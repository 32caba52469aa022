"""Every error has one shape and a fitting status; health, readiness and the docs are served."""

from __future__ import annotations

from pathlib import Path

import httpx

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.conftest import TEST_SECRET
from tests.helpers import PASSWORD, assert_error, fresh_email, sign_up


async def _client_for(database_url: str, home: Path) -> tuple[httpx.AsyncClient, AppState]:
    settings = Settings(home=home, database_url=database_url, secret_key=TEST_SECRET)
    state = AppState.build(settings, clock=FakeClock())
    transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
    return httpx.AsyncClient(transport=transport, base_url="http://sizzle.test"), state


async def test_an_unknown_route_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/nothing-here"), 404, "not_found")


async def test_a_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete("/api/v1/tiers"), 405, "method_not_allowed")
    assert_error(await client.get("/api/v1/auth/login"), 405, "method_not_allowed")


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b'{"email": "a@example.com", "password": ',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 422, "validation_error")


async def test_a_body_that_is_not_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        content=b"email=a@example.com&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 422)
    plain = await client.post(
        "/api/v1/auth/login", content=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert_error(plain, 422)


async def test_a_json_body_of_the_wrong_type_is_422(client: httpx.AsyncClient) -> None:
    for body in ([], "text", 42, None):
        assert_error(await client.post("/api/v1/auth/login", json=body), 422)


async def test_an_empty_body_is_422(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    response = await client.post(
        "/api/v1/sessions", content=b"", headers={**auth, "Content-Type": "application/json"}
    )
    assert_error(response, 422)


async def test_wrong_typed_fields_are_422_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": 5, "password": ["x"]})
    error = assert_error(response, 422, "validation_error")
    assert "email" in error["message"] and "password" in error["message"]


async def test_validation_errors_read_as_sentences(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    too_long = await client.post(
        "/api/v1/keys", json={"name": "k" * 101, "scopes": ["sessions:read"]}, headers=auth
    )
    error = assert_error(too_long, 422, "validation_error")
    assert error["message"] == 'The field "name" can be at most 100 characters.'
    assert error["details"] == [
        {"field": "name", "type": "string_too_long", "problem": error["message"]}
    ]
    missing = await client.post("/api/v1/auth/login", json={"email": fresh_email()})
    assert assert_error(missing, 422)["message"] == 'The field "password" is required.'
    not_json = await client.post(
        "/api/v1/auth/login", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert assert_error(not_json, 422)["message"] == "The request body is not valid JSON."
    wrong_type = await client.get("/api/v1/sessions?limit=many", headers=auth)
    assert assert_error(wrong_type, 422)["message"] == 'The field "limit" must be a whole number.'


async def test_overlong_fields_are_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": fresh_email(), "password": "p" * 10_000}
    )
    assert_error(response, 422)
    auth = await sign_up(client)
    response = await client.post(
        "/api/v1/sessions", json={"tier": "starter", "model": "m" * 10_000}, headers=auth
    )
    assert_error(response, 422)


async def test_nul_characters_in_text_are_422_on_every_database(
    client: httpx.AsyncClient,
) -> None:
    register = await client.post(
        "/api/v1/auth/register",
        json={"email": fresh_email(), "password": PASSWORD, "name": "a\x00"},
    )
    assert_error(register, 422, "validation_error")
    login = await client.post("/api/v1/auth/login", json={"email": "a\x00@b.c", "password": "x"})
    assert_error(login, 422, "validation_error")
    auth = await sign_up(client)
    model = await client.post(
        "/api/v1/sessions", json={"tier": "starter", "model": "llama\x00"}, headers=auth
    )
    assert_error(model, 422, "validation_error")
    assert_error(await client.get("/api/v1/sessions/%00", headers=auth), 422)
    assert_error(await client.post("/api/v1/sessions/ab%00/stop", headers=auth), 422)


async def test_nul_characters_in_ids_are_422_on_every_database(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    for method, path in (
        ("DELETE", "/api/v1/keys/%00"),
        ("GET", "/api/v1/billing/purchases/ab%00"),
        ("GET", "/api/v1/billing/purchases/%00/receipt"),
    ):
        assert_error(await client.request(method, path, headers=auth), 422, "validation_error")


async def test_a_moment_that_utc_cannot_hold_or_a_bare_number_is_422(
    client: httpx.AsyncClient,
) -> None:
    auth = await sign_up(client)
    for expires_at in ("9999-12-31T23:59:59-23:00", 99_999_999_999):
        response = await client.post(
            "/api/v1/keys",
            json={"name": "late", "scopes": ["inference"], "expires_at": expires_at},
            headers=auth,
        )
        assert_error(response, 422, "validation_error")


async def test_huge_or_negative_paging_params_are_422(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    for path in ("/api/v1/sessions", "/api/v1/billing/transactions"):
        for params in (
            {"limit": 10**30},
            {"offset": 10**30},
            {"limit": -1},
            {"offset": -1},
            {"limit": "1e3"},
            {"offset": "NaN"},
        ):
            assert_error(await client.get(path, params=params, headers=auth), 422)


async def test_an_offset_past_the_end_is_an_empty_page(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    response = await client.get(
        "/api/v1/billing/transactions", params={"offset": 1_000_000_000}, headers=auth
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "total": 1}


async def test_validation_errors_have_the_standard_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/register", json={"password": PASSWORD})
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])


async def test_healthz_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_200_with_the_database_migrated(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "migrations": "ok"}


async def test_readyz_is_503_when_migrations_are_pending(tmp_path: Path) -> None:
    client, state = await _client_for(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", tmp_path)
    async with client:
        response = await client.get("/readyz")
    await state.db.dispose()
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "pending"


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    client, state = await _client_for("postgresql+asyncpg://nobody@127.0.0.1:1/nowhere", tmp_path)
    async with client:
        response = await client.get("/readyz")
    await state.db.dispose()
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")


async def test_docs_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    schema = await client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/me",
        "/api/v1/tiers",
        "/api/v1/availability",
        "/api/v1/sessions",
        "/api/v1/sessions/{session_id}",
        "/api/v1/billing/balance",
        "/api/v1/billing/transactions",
    ):
        assert path in paths, path


async def test_an_unexpected_failure_is_a_500_in_the_standard_shape(
    state: AppState, db: Database, settings: Settings
) -> None:
    app = create_app(state=state, run_jobs=False)

    @app.get("/api/v1/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    @app.get("/boom")
    async def page_boom() -> None:
        raise RuntimeError("kaput")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://sizzle.test") as client:
        response = await client.get("/api/v1/boom")
        page = await client.get("/boom")
    error = assert_error(response, 500, "internal_error")
    assert "kaput" not in error["message"]
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert "Something went wrong on our side" in page.text
    assert "kaput" not in page.text and "Traceback" not in page.text
