"""Fixtures: a real database (SQLite file, or PostgreSQL from SIZZLE_TEST_DATABASE_URL),
a fake clock, the app on an in-process transport."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.migrate import upgrade
from sizzle.logging import configure_logging
from sizzle.settings import Settings
from sizzle.state import AppState
from tests import secret_logs
from tests.helpers import NODE_TOKEN, PASSWORD, TEST_SECRET
from tests.smtp_inbox import inbox  # noqa: F401 - the SMTP fixture, for every test module

SHARED_POSTGRES_URL = os.environ.get("SIZZLE_TEST_DATABASE_URL", "")
# Run in parallel (pytest-xdist, as scripts/test does), each worker has a PostgreSQL database
# of its own beside the one given, made for the run (`migrated_template`) and dropped after.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def _worker_database(url: str, worker: str) -> str:
    """The database beside `url` that the xdist `worker` uses: `<name>_<worker>`."""
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{worker}").render_as_string(hide_password=False)


POSTGRES_URL = (
    _worker_database(SHARED_POSTGRES_URL, WORKER)
    if SHARED_POSTGRES_URL and WORKER
    else SHARED_POSTGRES_URL
)
# The in-process clients speak to sizzle.test (Starlette's TestClient to testserver): every
# Settings a test makes allows those names besides loopback; production allows only loopback
# and the public URL's host unless told.
TEST_HOSTS = "sizzle.test,testserver,localhost,127.0.0.1,[::1]"
os.environ.setdefault("SIZZLE_ALLOWED_HOSTS", TEST_HOSTS)


def asyncpg_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


# Passwords and keys the tests use, besides every hash, token and key by its shape: none may
# reach a log line of the run (its own, or a server process's).
SECRET_SCANNER = secret_logs.SecretScanner(
    known_secrets=(
        PASSWORD,
        "a brand new pass phrase",
        "purple otter trombone",
        TEST_SECRET,
        NODE_TOKEN,
    )
)


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("WARNING")  # plain JSON lines; no slow pretty tracebacks in test logs
    secret_logs.install(SECRET_SCANNER, stderr_level=logging.WARNING)


@pytest.fixture(autouse=True, scope="session")
def _no_secret_in_any_log() -> Iterator[None]:
    """Fails the run (at its end) if a log line carried a secret."""
    yield
    if SECRET_SCANNER.leaks:
        pytest.fail(SECRET_SCANNER.report(), pytrace=False)


@pytest.fixture(autouse=True)
def _logs_scanned() -> None:
    """A test that configured logging anew (a command run in-process) dropped the scanner."""
    if SECRET_SCANNER not in logging.getLogger().handlers:
        configure_logging("WARNING")
        secret_logs.install(SECRET_SCANNER, stderr_level=logging.WARNING)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs PostgreSQL: set SIZZLE_TEST_DATABASE_URL")
    for item in items:
        if "postgres_only" in item.keywords and not POSTGRES_URL:
            item.add_marker(skip)


async def _on_postgres_server(statement: str) -> None:
    """One statement outside any transaction, on the database the run was given."""
    engine = create_async_engine(asyncpg_url(SHARED_POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Migrate once per test run (per worker): a SQLite file to copy, or the PostgreSQL test
    database (a worker's own, made here and dropped at the end)."""
    own_database = POSTGRES_URL != SHARED_POSTGRES_URL
    if POSTGRES_URL:
        url = asyncpg_url(POSTGRES_URL)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('template') / 'template.db'}"
    name = make_url(url).database

    async def _migrate() -> None:
        if own_database:
            await _on_postgres_server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await _on_postgres_server(f'CREATE DATABASE "{name}"')
        db = Database(url)
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(_migrate())
    yield url
    if own_database:
        asyncio.run(_on_postgres_server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path) -> str:
    if POSTGRES_URL:
        return migrated_template
    source = Path(migrated_template.removeprefix("sqlite+aiosqlite:///"))
    target = tmp_path / "sizzle.db"
    shutil.copyfile(source, target)
    return f"sqlite+aiosqlite:///{target}"


async def _empty_postgres(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            text(
                "TRUNCATE audit_events, api_keys, lab_subscriptions, auto_top_ups, refunds, "
                "purchases, chat_requests, ledger_entries, session_events, provider_instances, "
                "demo_instances, gpu_sessions, provider_listings, free_minutes_claims "
                "RESTART IDENTITY CASCADE"
            )
        )
        await tx.execute(text("DELETE FROM ledger_accounts WHERE user_id IS NOT NULL"))
        await tx.execute(text("DELETE FROM users"))
        await tx.execute(text("UPDATE ledger_accounts SET balance = 0"))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    if database.is_postgres:
        await _empty_postgres(database)
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        home=tmp_path,
        database_url=database_url,
        secret_key=TEST_SECRET,
        providers="demo",
        demo_provision_seconds=5,
        demo_capacity=4,
        free_minutes=5,
    )


@pytest.fixture
def state(settings: Settings, clock: FakeClock, db: Database) -> AppState:
    return AppState.build(settings, clock=clock, db=db)


@pytest.fixture
async def client(state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(state=state, run_jobs=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sizzle.test") as http:
        yield http
