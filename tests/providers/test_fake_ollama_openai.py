"""The fake Ollama node refuses on its OpenAI-compatible routes what Ollama refuses, so that
tests through it cannot pass on requests a real node would turn away."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app

EMBED, CHAT = "nomic-embed-text:v1.5", "llama3.1:8b"
PNG = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
async def node() -> Any:
    fake = FakeOllama(loaded={EMBED: 1, CHAT: 1}, embedding_models={EMBED})
    transport = httpx.ASGITransport(app=fake_ollama_app(fake))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
        yield http


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": EMBED}, "invalid input"),
        ({"model": EMBED, "input": []}, "invalid input"),
        ({"model": EMBED, "input": [1, 2]}, "invalid input type"),
        ({"model": EMBED, "input": "x", "encoding_format": "int8"}, "Invalid value for"),
    ],
)
async def test_embeddings_refuse_what_ollama_refuses(
    node: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    response = await node.post("/v1/embeddings", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)


async def test_an_embedding_model_does_not_chat(node: httpx.AsyncClient) -> None:
    body = {"model": EMBED, "messages": [{"role": "user", "content": "hi"}]}
    response = await node.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == f'"{EMBED}" does not support chat'


@pytest.mark.parametrize(
    ("part", "status", "message"),
    [
        (
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            400,
            "invalid image input",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lG"}},
            400,
            "invalid image input",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}},
            400,
            "invalid message format",
        ),
        ({"type": "file", "file": {}}, 400, "invalid message format"),
        ({"type": "image_url", "image_url": {"url": PNG}}, 500, "this model is missing data"),
    ],
)
async def test_image_parts_are_checked_as_ollama_checks_them(
    node: httpx.AsyncClient, part: dict[str, Any], status: int, message: str
) -> None:
    content = [{"type": "text", "text": "what is this?"}, part]
    body = {"model": CHAT, "messages": [{"role": "user", "content": content}]}
    response = await node.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    assert response.json()["error"]["message"].startswith(message)
