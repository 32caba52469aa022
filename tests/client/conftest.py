"""Fixtures: the app served on a loopback port, and `sizzle` commands run against it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.state import AppState
from tests.client.support import Driver, Sizzle
from tests.helpers import serve_here


@pytest.fixture
async def served(state: AppState) -> AsyncIterator[str]:
    async with serve_here(create_app(state=state, run_jobs=False)) as url:
        yield url


@pytest.fixture
async def sizzle(served: str, tmp_path: Path) -> AsyncIterator[Sizzle]:
    driver = Driver(asyncio.get_running_loop())
    async with httpx.AsyncClient(base_url=served, timeout=10) as api:
        yield Sizzle(served, tmp_path / "config", driver, api)
