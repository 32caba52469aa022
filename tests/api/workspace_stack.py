"""A user's workspace on a fake Ollama node, over real HTTP on loopback: Sizzle served by
uvicorn with the `ollama` provider on, two boxes that are the same fake node (behind a proxy
that wants its token), and helpers to get an active session and its request counts.

The node knows a chat model, an embedding model and a vision model, as the library does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from sizzle.state import AppState
from tests.helpers import act, create_session, get_session
from tests.providers.fakes.ollama import FakeOllama

HELLO = [{"role": "user", "content": "Say hello to the node"}]
STALL_SECONDS = 0.5
MODEL_TAG = "llama3.1:8b"  # what the library slug llama3.1-8b becomes on the starter tier
EMBEDDING_TAG = "nomic-embed-text:v1.5"  # the library's nomic-embed-text
VISION_TAG = "gemma3:4b"  # the library's gemma3-4b: it sees images


@dataclass
class Stack:
    node: FakeOllama
    state: AppState
    http: httpx.AsyncClient
    chat_clients: list[tuple[str, int]]  # the (address, port) each chat came to the node from


def recording_chat_clients(app: Any, clients: list[tuple[str, int]]) -> Any:
    """The node's app, noting the client address of each chat request it gets."""

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            clients.append(tuple(scope["client"]))
        await app(scope, receive, send)

    return recording


async def active_session(
    stack: Stack, *, auth: dict[str, str], model: str = "llama3.1-8b", chats: bool = True
) -> str:
    """A session on the fake node with `model` loaded, started; its id. `chats`: whether the
    workspace offers to chat with it (an embedding model does not chat)."""
    session_id = (await create_session(stack.http, auth=auth, tier="starter", model=model))["id"]
    for _ in range(5):
        await stack.state.jobs.run_once()
        if (await get_session(stack.http, auth=auth, session_id=session_id))["status"] == "ready":
            break
    started = await act(stack.http, auth=auth, session_id=session_id, action="start")
    assert started.status_code == 200, started.text
    assert started.json()["workspace"]["chat_available"] is chats
    return session_id


async def metrics(stack: Stack, *, auth: dict[str, str], session_id: str) -> dict[str, Any]:
    """The session's chat counts, once the proxy has written what it holds (it batches)."""
    await stack.state.chat_proxy.recorder.flush()
    response = await stack.http.get(f"/api/v1/sessions/{session_id}/metrics", headers=auth)
    assert response.status_code == 200, response.text
    chat: dict[str, Any] = response.json()["chat"]
    return chat
