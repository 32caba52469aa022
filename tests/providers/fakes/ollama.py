"""A fake Ollama node: version, tags, ps, a streaming pull, load/unload through generate, and
the OpenAI-compatible `/v1/chat/completions` (SSE chunks, then `data: [DONE]`) and
`/v1/embeddings` (checked as Ollama checks them: see ollama_openai.py).

Scriptable through the FakeOllama object: which models the registry has (pullable), which are
local and loaded, a pull that fails mid-stream, a record of every load and unload, and for chat:
the reply's tokens, a gate that holds the last token back, an error event or a dropped
connection after some tokens, an endless reply, and whether a reply was cut off by the client.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from tests.providers.fakes.ollama_openai import (
    Refused,
    as_base64,
    openai_error,
    read_embedding_input,
    read_messages,
    vector,
)

DIGEST = "sha256:" + "ab" * 32


@dataclass
class FakeOllama:
    version: str = "0.5.1"
    # models the "registry" can pull: name -> size in bytes
    registry: dict[str, int] = field(default_factory=lambda: {"llama3.2:latest": 2_000})
    local: dict[str, int] = field(default_factory=dict)
    loaded: dict[str, int] = field(default_factory=dict)  # name -> size_vram
    fail_pull_after: int | None = None  # progress lines sent before an {"error"} line
    pull_steps: int = 4
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # chat
    reply: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " node", "."])
    hold_last_token: threading.Event | None = None  # the last token waits until this is set
    chat_error_after: int | None = None  # tokens sent before a `data: {"error"}` event
    chat_drop_after: int | None = None  # tokens sent before the connection is dropped
    chat_endless: bool = False  # tokens until the client goes away
    endless_token: str = " more"
    chat_token_seconds: float = 0.0  # pause between tokens
    chat_cut_off: threading.Event = field(default_factory=threading.Event)
    chat_tokens_sent: int = 0
    # Ollama has no authentication; a node with a token stands behind a reverse proxy that
    # answers 401 to a request without `Authorization: Bearer <token>`, as such proxies do.
    token: str | None = None
    refused: int = 0  # requests the proxy turned away
    # what the models are: an embedding model does not chat; only a vision model takes images
    embedding_models: set[str] = field(default_factory=set)
    vision_models: set[str] = field(default_factory=set)
    embedding_length: int = 8
    images_seen: list[bytes] = field(default_factory=list)


def _name(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


def _not_found(model: str) -> JSONResponse:
    return JSONResponse({"error": f"model '{model}' not found"}, status_code=404)


class TokenProxy:
    """The reverse proxy in front of a node with a token (pure ASGI: streams pass as they are)."""

    def __init__(self, app: Any, *, state: FakeOllama) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.state.token is not None:
            sent = dict(scope["headers"]).get(b"authorization", b"")
            if sent != f"Bearer {self.state.token}".encode():
                self.state.refused += 1
                refusal = PlainTextResponse(
                    "401 Authorization Required",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="ollama"'},
                )
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def fake_ollama_app(state: FakeOllama) -> FastAPI:
    app = FastAPI()

    app.add_middleware(TokenProxy, state=state)

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": state.version}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        return {
            "models": [
                {"name": name, "model": name, "size": size, "digest": DIGEST}
                for name, size in state.local.items()
            ]
        }

    @app.get("/api/ps")
    async def ps() -> dict[str, Any]:
        return {
            "models": [
                {"name": name, "model": name, "size": size, "size_vram": size, "digest": DIGEST}
                for name, size in state.loaded.items()
            ]
        }

    @app.post("/api/pull")
    async def pull(request: Request) -> Any:
        body = await request.json()
        state.requests.append(("pull", body))
        model = _name(str(body.get("model", "")))

        async def lines() -> AsyncIterator[bytes]:
            sent = 0

            def line(item: dict[str, Any]) -> bytes:
                nonlocal sent
                sent += 1
                return (json.dumps(item) + "\n").encode()

            def failing() -> bool:
                return state.fail_pull_after is not None and sent >= state.fail_pull_after

            yield line({"status": "pulling manifest"})
            if model not in state.registry:
                yield line({"error": "pull model manifest: file does not exist"})
                return
            total = state.registry[model]
            yield line({"status": f"pulling {DIGEST[7:19]}", "digest": DIGEST})
            for step in range(state.pull_steps + 1):
                if failing():
                    yield line({"error": "max retries exceeded: connection reset"})
                    return
                completed = total * step // state.pull_steps
                yield line(
                    {
                        "status": f"pulling {DIGEST[7:19]}",
                        "digest": DIGEST,
                        "total": total,
                        "completed": completed,
                    }
                )
                await asyncio.sleep(0)
            for status in ("verifying sha256 digest", "writing manifest"):
                if failing():
                    yield line({"error": "disk full"})
                    return
                yield line({"status": status})
            yield line({"status": "removing any unused layers"})
            state.local[model] = total
            yield line({"status": "success"})

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.post("/api/generate")
    async def generate(request: Request) -> Any:
        body = await request.json()
        model = _name(str(body.get("model", "")))
        if not body.get("model"):
            return JSONResponse({"error": "model is required"}, status_code=400)
        if body.get("keep_alive") == 0:
            state.requests.append(("unload", body))
            state.loaded.pop(model, None)
            return {"model": model, "response": "", "done": True, "done_reason": "unload"}
        state.requests.append(("load", body))
        if model not in state.local:
            return _not_found(str(body["model"]))
        state.loaded[model] = state.local[model]
        return {"model": model, "response": "", "done": True, "done_reason": "load"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        state.requests.append(("chat", body))
        model = str(body.get("model", ""))
        if _name(model) not in state.loaded and model not in state.loaded:
            return JSONResponse(
                {
                    "error": {
                        "message": f'model "{model}" not found, try pulling it first',
                        "type": "api_error",
                        "param": None,
                        "code": None,
                    }
                },
                status_code=404,
            )
        try:
            text, images = read_messages(body.get("messages") or [])
        except Refused as refused:
            return JSONResponse(openai_error(400, refused.message), status_code=400)
        if _name(model) in state.embedding_models:
            message = f'"{model}" does not support chat'
            return JSONResponse(openai_error(400, message), status_code=400)
        if images and _name(model) not in state.vision_models:
            # what users report Ollama answering when a model without vision gets an image
            message = "this model is missing data required for image input"
            return JSONResponse(openai_error(500, message), status_code=500)
        state.images_seen.extend(images)
        prompt_tokens = len(text.split()) + len(images)
        created = int(time.time())
        if not body.get("stream"):
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_ollama",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(state.reply)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(state.reply),
                    "total_tokens": prompt_tokens + len(state.reply),
                },
            }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _chat_events(state, model, created, prompt_tokens, include_usage),
            media_type="text/event-stream",
        )

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        body = await request.json()
        state.requests.append(("embeddings", body))
        model = str(body.get("model", ""))
        try:
            texts = read_embedding_input(body)
        except Refused as refused:
            return JSONResponse(openai_error(400, refused.message), status_code=400)
        if _name(model) not in state.loaded and model not in state.loaded:
            message = f"model '{model}' not found"
            return JSONResponse(openai_error(404, message), status_code=404)
        dimensions = body.get("dimensions") if isinstance(body.get("dimensions"), int) else None
        vectors = [vector(t, length=state.embedding_length, dimensions=dimensions) for t in texts]
        base64_wanted = str(body.get("encoding_format") or "").lower() == "base64"
        tokens = sum(len(t.split()) for t in texts)
        return {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "embedding": as_base64(v) if base64_wanted else v,
                    "index": i,
                }
                for i, v in enumerate(vectors)
            ],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    return app


def _chunk(model: str, created: int, delta: dict[str, Any], finish: str | None) -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def _chat_events(
    state: FakeOllama, model: str, created: int, prompt_tokens: int, include_usage: bool
) -> AsyncIterator[bytes]:
    sent = 0
    try:
        tokens = iter(state.reply)
        while True:
            token = next(tokens, None)
            if token is None and state.chat_endless:
                token = state.endless_token
            if token is None:
                break
            if sent == state.chat_error_after:
                error = {"error": {"message": "model runner has unexpectedly stopped"}}
                yield f"data: {json.dumps(error)}\n\n".encode()
                return
            if sent == state.chat_drop_after:
                raise ConnectionResetError("the fake node drops the connection")
            last = sent == len(state.reply) - 1 and not state.chat_endless
            if last and state.hold_last_token is not None:
                deadline = time.monotonic() + 10
                while not state.hold_last_token.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
            yield _chunk(model, created, {"role": "assistant", "content": token}, None)
            sent += 1
            state.chat_tokens_sent = sent
            await asyncio.sleep(state.chat_token_seconds)
        yield _chunk(model, created, {"role": "assistant", "content": ""}, "stop")
        if include_usage:
            usage = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": sent,
                    "total_tokens": prompt_tokens + sent,
                },
            }
            yield f"data: {json.dumps(usage)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        state.chat_cut_off.set()
        raise
