"""Schemathesis against Sizzle's own OpenAPI schema: for every API operation, generated
requests (valid and invalid) never get a 5xx, and every answer is documented there: its
status, its content type and its body's schema.

The app runs in process (schemathesis' ASGI transport, one event loop for the whole module)
on a database seeded once: a signed-in user with an active and a ready session, an API key
and a paid purchase, and an operator, whose token the operator routes get. A second test
points the paths that name a thing at those things, so that their answers are checked too,
not only the 404s of made-up ids. Deterministic: the same cases every run."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.conftest import POSTGRES_URL, TEST_SECRET, _empty_postgres
from tests.helpers import (
    add_paid_purchase,
    launch_active_session,
    launch_ready_session,
    log_in,
    make_user,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# Schemathesis' own settings: a stream is cut after its first event (the session events
# never end while the session lives), and 503 is an answer, not a crash, where the operation
# documents it (payments not set up, no GPU free); status_code_conformance holds it to that.
CONFIG = {
    "seed": 20260301,  # the same cases every run, in CI and here
    "generation": {"deterministic": True},
    "max-stream-events": 1,
    "request-timeout": 10,
    "checks": {"not_a_server_error": {"expected-statuses": ["1xx", "2xx", "3xx", "4xx", "503"]}},
}


ROLE_MARK = "Bearer role:"


def _settings(home: Path, url: str) -> Settings:
    return Settings(
        home=home,
        database_url=url,
        secret_key=TEST_SECRET,
        providers="demo",
        demo_provision_seconds=5,
        demo_capacity=4,
        free_minutes=5,
        rate_limits_enabled=False,  # thousands of requests a minute from one address
    )


@dataclass(frozen=True)
class Seeded:
    app: Any
    tokens: dict[str, str]  # role -> sign-in token
    ids: dict[str, str]  # path parameter -> the id of a thing of the user's


async def _seed(settings: Settings, clock: FakeClock) -> tuple[dict[str, str], dict[str, str]]:
    """A user with credit, an active and a ready session, an API key and a paid purchase, and
    an operator; their sign-in tokens and the ids of the user's things. Runs on its own
    database handle, closed before the app under test opens one."""
    db = Database(settings.database_url)
    if db.is_postgres:
        await _empty_postgres(db)
    state = AppState.build(settings, clock=clock, db=db)
    transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://sizzle.test") as client:
            user = await make_user(db, now=clock.now(), plan="pro", credit_usd="50")
            user_auth = await log_in(client, email=user.email)
            session_id = await launch_active_session(client, state, clock, auth=user_auth)
            await launch_ready_session(client, state, clock, auth=user_auth)
            key = await client.post(
                "/api/v1/keys", json={"name": "fuzz", "scopes": ["inference"]}, headers=user_auth
            )
            assert key.status_code == 201, key.text
            purchase_id = await add_paid_purchase(db, user_id=user.id, now=clock.now())
            admin = await make_user(db, now=clock.now(), is_admin=True)
            admin_auth = await log_in(client, email=admin.email)
    finally:
        await state.close()
    tokens = {
        role: auth["Authorization"].removeprefix("Bearer ")
        for role, auth in (("user", user_auth), ("operator", admin_auth))
    }
    ids = {"session_id": session_id, "key_id": key.json()["id"], "purchase_id": purchase_id}
    return tokens, ids


@pytest.fixture(scope="module")
def seeded(migrated_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """The app under test, on a database seeded for this module."""
    home = tmp_path_factory.mktemp("schemathesis")
    url = migrated_template
    if not POSTGRES_URL:
        target = home / "sizzle.db"
        shutil.copyfile(migrated_template.removeprefix("sqlite+aiosqlite:///"), target)
        url = f"sqlite+aiosqlite:///{target}"
    config = _settings(home, url)
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    tokens, ids = asyncio.run(_seed(config, clock))
    # A fresh database handle: its connections belong to schemathesis' event loop.
    state = AppState.build(config, clock=clock, db=Database(url))
    yield Seeded(app=create_app(state=state, run_jobs=False), tokens=tokens, ids=ids)
    asgi.shutdown_lifespans()  # the app's lifespan closes its state: jobs, clients, the pool


def _schema() -> Any:
    """The schema as the app publishes it; requests go to the seeded app, passed per call."""
    spec_app = create_app(
        Settings(database_url="sqlite+aiosqlite:///:memory:", secret_key=TEST_SECRET),
        run_jobs=False,
    )
    loaded = schemathesis.openapi.from_dict(
        spec_app.openapi(), config=schemathesis.Config.from_dict(CONFIG)
    )
    loaded.app = spec_app  # in process (ASGI), not over the network
    return loaded


schema = _schema()


@schema.auth(refresh_interval=None, retry_on=[])
class SignedIn:
    """Marks each case with the role it signs in as: the operator on the operator routes, the
    user everywhere else; no mark where schemathesis tests a request without a token. Some
    cases are built when the tests are collected, before there is anyone to sign in as: the
    test puts the role's token in place of its mark."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return "operator" if case.path.startswith("/api/v1/admin/") else "user"

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": ROLE_MARK + data}


def sign_in(case: schemathesis.Case, tokens: dict[str, str]) -> None:
    """Swap the case's role mark for that role's sign-in token."""
    mark = (case.headers or {}).get("Authorization", "")
    if isinstance(mark, str) and mark.startswith(ROLE_MARK):
        case.headers["Authorization"] = f"Bearer {tokens[mark.removeprefix(ROLE_MARK)]}"


FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@FUZZ
def test_every_operation_answers_as_documented(case: schemathesis.Case, seeded: Seeded) -> None:
    sign_in(case, seeded.tokens)
    case.call_and_validate(app=seeded.app, checks=CHECKS)


@schema.include(path_regex=r"\{(session_id|key_id|purchase_id)\}").parametrize()
@FUZZ
def test_my_things_answer_as_documented(case: schemathesis.Case, seeded: Seeded) -> None:
    sign_in(case, seeded.tokens)
    for name in case.path_parameters or {}:
        case.path_parameters[name] = seeded.ids.get(name, case.path_parameters[name])
    case.call_and_validate(app=seeded.app, checks=CHECKS)
