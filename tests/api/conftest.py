"""Fixtures for the API tests that chat with a session's model: the fake node and Sizzle in
front of it (see workspace_stack.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.api.workspace_stack import (
    EMBEDDING_TAG,
    MODEL_TAG,
    STALL_SECONDS,
    VISION_TAG,
    Stack,
    recording_chat_clients,
)
from tests.helpers import NODE_TOKEN, serve_here
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.server import serve


@pytest.fixture
def node() -> Iterator[tuple[FakeOllama, str, list[tuple[str, int]]]]:
    fake = FakeOllama(
        registry={MODEL_TAG: 2_000, "qwen2.5:7b": 2_000, EMBEDDING_TAG: 300, VISION_TAG: 3_000},
        token=NODE_TOKEN,
        embedding_models={EMBEDDING_TAG},
        vision_models={VISION_TAG},
    )
    clients: list[tuple[str, int]] = []
    with serve(recording_chat_clients(fake_ollama_app(fake), clients)) as url:
        yield fake, url, clients


@pytest.fixture
async def stack(
    settings: Settings,
    clock: FakeClock,
    db: Database,
    node: tuple[FakeOllama, str, list[tuple[str, int]]],
) -> AsyncIterator[Stack]:
    fake, node_url, clients = node
    boxes = [
        {
            "name": name,
            "url": node_url,
            "gpu": "NVIDIA GeForce RTX 4090",
            "gpu_count": 1,
            "vram_gb": 24,
            "price_per_hour_usd": "0.30",
            "token": NODE_TOKEN,
        }
        for name in ("box-1", "box-2")
    ]
    update = {
        "providers": "ollama",
        "ollama_nodes": json.dumps(boxes),
        "chat_stall_seconds": STALL_SECONDS,
    }
    state = AppState.build(settings.model_copy(update=update), clock=clock, db=db)
    app = create_app(state=state, run_jobs=False)
    async with serve_here(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield Stack(fake, state, http, clients)
    await state.chat_proxy.close()
    for provider in state.providers.values():
        await provider.close()
