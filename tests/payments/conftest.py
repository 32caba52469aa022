"""Payments fixtures: a fake Stripe on loopback and Sizzle wired to it; localstripe as a real
process and Sizzle wired to that (`stripe_shop`); the page tests' browser-like client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.payments import localstripe_server
from tests.payments.fake_stripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, build_app
from tests.payments.localstripe_server import LocalShop
from tests.payments.shop import Shop
from tests.providers.fakes.server import serve
from tests.web.conftest import browser

__all__ = ["browser"]


@pytest.fixture
def fake_stripe() -> Iterator[tuple[FakeStripe, str]]:
    fake = FakeStripe()
    with serve(build_app(fake)) as url:
        yield fake, url


@pytest.fixture
def shop_settings() -> dict[str, object]:
    """Settings a test module changes for its shop (override this fixture there)."""
    return {}


@asynccontextmanager
async def wired(
    settings: Settings,
    clock: FakeClock,
    db: Database,
    *,
    api_base: str,
    secret_key: str,
    extra: dict[str, object],
) -> AsyncIterator[tuple[AppState, httpx.AsyncClient]]:
    """Sizzle with its Stripe calls going to `api_base`, and a client for its API."""
    update = {
        "stripe_secret_key": secret_key,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": api_base,
        "public_url": "https://sizzle.example",
        **extra,
    }
    state = AppState.build(settings.model_copy(update=update), clock=clock, db=db)
    transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://sizzle.test") as client:
        yield state, client


@pytest.fixture
async def shop(
    settings: Settings,
    clock: FakeClock,
    db: Database,
    fake_stripe: tuple[FakeStripe, str],
    shop_settings: dict[str, object],
) -> AsyncIterator[Shop]:
    fake, url = fake_stripe
    async with wired(
        settings, clock, db, api_base=url, secret_key=SECRET_KEY, extra=shop_settings
    ) as (state, client):
        yield Shop(fake, state, client)


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """localstripe, started once per test session (only if a test asks for it)."""
    with localstripe_server.running_localstripe() as url:
        yield url


@pytest.fixture
def localstripe(localstripe_url: str) -> str:
    """localstripe's address, emptied for this test."""
    localstripe_server.flush(localstripe_url)
    return localstripe_url


@pytest.fixture
async def stripe_shop(
    settings: Settings,
    clock: FakeClock,
    db: Database,
    localstripe: str,
    shop_settings: dict[str, object],
) -> AsyncIterator[LocalShop]:
    """`shop`, with Sizzle's Stripe calls going to localstripe."""
    async with wired(
        settings,
        clock,
        db,
        api_base=localstripe,
        secret_key=localstripe_server.SECRET_KEY,
        extra=shop_settings,
    ) as (state, client):
        yield LocalShop(localstripe, state, client)
