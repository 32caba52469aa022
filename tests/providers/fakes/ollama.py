"""A fake Ollama node: version, tags, ps, a streaming pull, and load/unload through generate.

Scriptable through the FakeOllama object: which models the registry has (pullable), which are
local and loaded, a pull that fails mid-stream, and a record of every load and unload.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

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


def _name(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


def _not_found(model: str) -> JSONResponse:
    return JSONResponse({"error": f"model '{model}' not found"}, status_code=404)


def fake_ollama_app(state: FakeOllama) -> FastAPI:
    app = FastAPI()

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

    return app
