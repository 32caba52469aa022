"""Page tests: the app on an in-process transport, with a client that keeps cookies like a
browser (httpx does) and does not follow redirects, so tests see where they go."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.state import AppState


@pytest.fixture
async def browser(state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(state=state, run_jobs=False)
    transport = httpx.ASGITransport(app=app)
    # https: the session cookie is Secure, and httpx sends Secure cookies only over https.
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as client:
        yield client
