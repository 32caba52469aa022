"""Payments fixtures: a fake Stripe on loopback and Sizzle wired to it; the page tests'
browser-like client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.payments.fake_stripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, build_app
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
async def shop(
    settings: Settings, clock: FakeClock, db: Database, fake_stripe: tuple[FakeStripe, str]
) -> AsyncIterator[Shop]:
    fake, url = fake_stripe
    update = {
        "stripe_secret_key": SECRET_KEY,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": url,
        "public_url": "https://sizzle.example",
    }
    state = AppState.build(settings.model_copy(update=update), clock=clock, db=db)
    transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://sizzle.test") as client:
        yield Shop(fake, state, client)
