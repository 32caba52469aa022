"""Benchmark: what the workspace proxy adds to a chat, against the same node asked directly.

    python bench/proxy.py [--requests 200] [--tokens 32] [--runs 3] [--database URL]

A stand-in Ollama node (uvicorn on loopback, a process of its own) streams `--tokens` tokens
for every `/v1/chat/completions` request, as fast as it can. Sizzle (`sizzle serve --no-jobs`
on loopback, SQLite unless --database says otherwise, its own process) holds two active
sessions on that node: one configured at the node's URL, one reached over SSH (a real
OpenSSH server on loopback stands for the node's sshd, and Sizzle tunnels to the node through
it, as it does to every rented instance). The same streaming request is sent in turn straight
to the node (the floor), through Sizzle's `/v1/chat/completions` (`proxied`), the same saved in
a chat (`saved`: `X-Sizzle-Conversation`, the question and the answer written as it streams)
and through Sizzle and the SSH tunnel (`tunneled`); for each the client measures the time to
the first content chunk (TTFT) and to `[DONE]`.

Prints one JSON line per run: medians and 90th percentiles in milliseconds for each path,
and what each adds to TTFT over the floor measured in the same run (`ttft_added_ms`,
`saved_ttft_added_ms`, `tunnel_ttft_added_ms`): its median minus the direct median, and
likewise the 90th percentiles (goal: a median of at most 5 ms each). A last line sums the
runs up: the median over runs of each added figure. The proxy's time includes what every
request does before it is forwarded: checking the token and picking the session (and the
saved chat's room) in one database read transaction. Its counting row, and a saved chat's
messages, are written in batches, off the request's path.

The tunnel needs OpenSSH's sshd (`apt-get install openssh-server`); without it that path is
left out and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from support import active_session, bench_user, free_port, running

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.sshd
from tests.sshd import SSHD, Sshd  # noqa: E402 - the tests' loopback sshd

from sizzle.db.database import Database
from sizzle.db.migrate import upgrade
from sizzle.db.models import Conversation, ProviderInstance
from sizzle.security import create_access_token

SECRET = secrets.token_urlsafe(32)
NODE = "bench-node"
SSH_NODE = "bench-node-ssh"  # the same node, reached over SSH
MODEL = "llama3.1:8b"
GOAL_ADDED_MS = 5  # issue 13: the proxy adds at most this to the median time to first token


def fake_node(tokens: int) -> FastAPI:
    app = FastAPI()

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": "0.5.1"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()

        async def events() -> AsyncIterator[bytes]:
            for i in range(tokens):
                chunk = {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "delta": {"content": f" t{i}"}, "finish_reason": None}
                    ],
                }
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": tokens}}
            yield f"data: {json.dumps(usage)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


async def prepare(database_url: str, now: datetime) -> tuple[str, dict[str, str], str]:
    """A user with an active session on each node, and a saved chat: (user id, {node: session
    id}, chat id)."""
    db = Database(database_url)
    sessions: dict[str, str] = {}
    try:
        await upgrade(db)
        async with db.transaction() as tx:
            user = await bench_user(tx, now)
            for node in (NODE, SSH_NODE):
                session = active_session(
                    user.id, now, model=MODEL, provider="ollama", instance_id=node
                )
                tx.add(session)
                await tx.flush()
                tx.add(
                    ProviderInstance(
                        session_id=session.id,
                        provider="ollama",
                        external_id=node,
                        name=f"sizzle-{session.id}",
                        gpu_type="RTX 4090",
                        gpu_count=1,
                        upstream_micros_per_hour=300_000,
                        created_at=now,
                    )
                )
                sessions[node] = session.id
            chat = Conversation(
                id=uuid.uuid4().hex,
                user_id=user.id,
                title="bench",
                size_bytes=0,
                created_at=now,
                updated_at=now,
            )
            tx.add(chat)
            return user.id, sessions, chat.id
    finally:
        await db.dispose()


async def one_chat(
    http: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> tuple[float, float]:
    """(time to first content chunk, time to [DONE]) in ms."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    started = time.perf_counter()
    first: float | None = None
    async with http.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {") and '"content"' in line:
                first = time.perf_counter()
            if line == "data: [DONE]":
                break
    ended = time.perf_counter()
    assert first is not None
    return (first - started) * 1000, (ended - started) * 1000


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": round(statistics.median(ordered), 2),
        "p90": round(ordered[int(len(ordered) * 0.9) - 1], 2),
    }


def added(proxied: dict[str, float], direct: dict[str, float]) -> dict[str, float]:
    """What the proxy adds over the floor, figure by figure."""
    return {name: round(proxied[name] - direct[name], 2) for name in ("median", "p90")}


async def measure(
    paths: dict[str, tuple[str, dict[str, str]]],
    requests: int,
    gap_seconds: float,
    database: str,
) -> dict[str, Any]:
    """Each path ("direct" first: the floor) asked `requests` times, in turns whose order
    rotates, so that no path always follows another."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    order = list(paths)
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(10):  # warm every path: connections, caches, the tunnel
            for url, headers in paths.values():
                await one_chat(http, url, headers)
        for i in range(requests):
            for name in order[i % len(order) :] + order[: i % len(order)]:
                url, headers = paths[name]
                samples[name].append(await one_chat(http, url, headers))
                await asyncio.sleep(gap_seconds)
    ttft = {name: summary([t for t, _ in taken]) for name, taken in samples.items()}
    run: dict[str, Any] = {"database": database, "requests_each": requests}
    run["gap_ms"] = gap_seconds * 1000
    for name, taken in samples.items():
        run[f"{name}_ttft_ms"] = ttft[name]
        run[f"{name}_total_ms"] = summary([t for _, t in taken])
    run["ttft_added_ms"] = added(ttft["proxied"], ttft["direct"])
    run["saved_ttft_added_ms"] = added(ttft["saved"], ttft["direct"])
    if "tunneled" in ttft:
        run["tunnel_ttft_added_ms"] = added(ttft["tunneled"], ttft["direct"])
    return run


def overall(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs summed up: the median over runs of each added figure, against the goal."""
    result: dict[str, Any] = {"runs": len(runs)}
    met = True
    for figure in ("ttft_added_ms", "saved_ttft_added_ms", "tunnel_ttft_added_ms"):
        if figure not in runs[0]:
            result[figure] = "skipped: no sshd (apt-get install openssh-server)"
            continue
        result[figure] = {
            name: round(statistics.median(run[figure][name] for run in runs), 2)
            for name in ("median", "p90")
        }
        result[f"{figure}_median_each_run"] = [run[figure]["median"] for run in runs]
        met = met and result[figure]["median"] <= GOAL_ADDED_MS
    result["goal_ttft_added_ms_median"] = GOAL_ADDED_MS
    result["goal_met"] = met
    return result


@contextmanager
def ssh_node(home: Path, node_url: str) -> Iterator[tuple[dict[str, Any], Path] | None]:
    """The node's entry reached over SSH through a loopback sshd, and the key Sizzle logs in
    with; None without sshd."""
    if not shutil.which(SSHD):
        yield None
        return
    root = home / "sshd"
    root.mkdir()
    sshd = Sshd(root)
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = home / "node_key"
    key.write_private_key(key_file)
    key_file.chmod(0o600)
    sshd.authorize(key.export_public_key().decode())
    sshd.start()
    try:
        entry = node_entry(SSH_NODE, node_url)  # where Ollama listens on the node itself
        entry["ssh"] = f"{sshd.username}@127.0.0.1:{sshd.port}"
        entry["ssh_host_key"] = sshd.host_public_key()
        yield entry, key_file
    finally:
        sshd.stop()


def node_entry(name: str, url: str) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        "gpu": "RTX 4090",
        "gpu_count": 1,
        "vram_gb": 24,
        "price_per_hour_usd": "0.30",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="each path, each run")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3, help="measurements in turn (default 3)")
    parser.add_argument(
        "--database",
        help="an empty database of its own, e.g. postgresql+asyncpg://localhost/bench "
        "(default: a SQLite file in a temporary folder)",
    )
    parser.add_argument(
        "--gap-ms", type=float, default=0, help="pause between requests (default: none)"
    )
    parser.add_argument("--serve-node", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 1 or args.requests < 10:
        parser.error("--runs must be at least 1 and --requests at least 10")
    if args.serve_node:  # the stand-in node, in a process of its own
        uvicorn.run(
            fake_node(args.tokens), host="127.0.0.1", port=args.serve_node, log_level="warning"
        )
        return
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as home, ExitStack() as stack:
        database_url = args.database or f"sqlite+aiosqlite:///{Path(home) / 'bench.db'}"
        user_id, sessions, chat_id = asyncio.run(prepare(database_url, now))
        node_port, sizzle_port = free_port(), free_port()
        node_command = [sys.executable, __file__, "--serve-node", str(node_port)]
        node_command += ["--tokens", str(args.tokens)]
        node_url = f"http://127.0.0.1:{node_port}"
        nodes = [node_entry(NODE, node_url)]
        tunnel = stack.enter_context(ssh_node(Path(home), node_url))
        if tunnel is not None:
            nodes.append(tunnel[0])
        env = {
            "SIZZLE_HOME": home,
            "SIZZLE_DATABASE_URL": database_url,
            "SIZZLE_SECRET_KEY": SECRET,
            "SIZZLE_PROVIDERS": "ollama",
            "SIZZLE_OLLAMA_NODES": json.dumps(nodes),
            # the limits stay on (their check is part of every request), above this load
            "SIZZLE_RATE_LIMIT_PER_USER": "1000000/minute",
            "SIZZLE_RATE_LIMIT_PER_IP": "1000000/minute",
        }
        if tunnel is not None:
            env["SIZZLE_OLLAMA_SSH_KEY_FILE"] = str(tunnel[1])
        sizzle_command = [sys.executable, "-m", "sizzle", "serve", "--no-jobs"]
        sizzle_command += ["--port", str(sizzle_port)]
        sizzle_url = f"http://127.0.0.1:{sizzle_port}"
        token = create_access_token(user_id, secret=SECRET, now=now, lifetime=timedelta(hours=1))
        chat = "/v1/chat/completions"
        paths = {"direct": (f"{node_url}{chat}", {})}
        for name, node in (("proxied", NODE), ("tunneled", SSH_NODE)):
            if node == NODE or tunnel is not None:
                headers = {"Authorization": f"Bearer {token}", "X-Sizzle-Session": sessions[node]}
                paths[name] = (f"{sizzle_url}{chat}", headers)
        saving = {**paths["proxied"][1], "X-Sizzle-Conversation": chat_id}
        paths["saved"] = (f"{sizzle_url}{chat}", saving)
        with (
            running(node_command, url=f"{node_url}/api/version"),
            running(sizzle_command, url=f"{sizzle_url}/healthz", env=env),
        ):
            runs = []
            for _ in range(args.runs):
                run = asyncio.run(
                    measure(paths, args.requests, args.gap_ms / 1000, database_url.split(":", 1)[0])
                )
                print(json.dumps(run), flush=True)
                runs.append(run)
    print(json.dumps(overall(runs)))


if __name__ == "__main__":
    main()
