"""Benchmark: GET /api/v1/sessions/{id} on a real `sizzle serve`, against a bare app's read.

    python bench/api.py [--duration 10] [--concurrency 16,64]
    python bench/api.py --database postgresql://postgres@127.0.0.1/postgres

Two servers run side by side on loopback, each a uvicorn process of its own, on one database:

- Sizzle: `sizzle serve --no-jobs`, asked for a seeded user's session with a sign-in token: the
  token checked, the account read (revocation, suspension), the rate limits counted, the
  session read and rendered. Its per-account and per-address limits are raised out of reach
  (they still count every request).
- The floor: a bare Starlette app that reads the same user and session rows in one SELECT with
  SQLAlchemy Core on the same driver (aiosqlite or asyncpg) and the same pool size, and answers
  them as JSON. No auth, no middleware.
- On SQLite, a second floor (`bare_one_trip`): the same bare app on Sizzle's own SQLite driver
  (db/sqlite_driver.py: one trip to aiosqlite's thread per statement, where SQLAlchemy's stock
  adapter makes four). The goal is set against the stock floor; the ratio to this one
  (`ratio_to_one_trip`) shows what Sizzle's own layers cost over the same driver.

Each is loaded in turn at each concurrency for `--duration` seconds (after a short warm-up),
with wrk when it is installed, else with a bounded asyncio client of keep-alive connections.
Prints one JSON line per (concurrency, server): rps, p50 and p99 in milliseconds, errors,
and for Sizzle its ratio to the floor's rps. Goal: ratio >= 0.5 at c16 and c64 on both
databases, Sizzle's p99 <= 50 ms at c16. The client shares the machine's cores with the
servers; compare figures from one run only.

With --database, give a PostgreSQL server: a database is made there for the run and dropped
after. Without, a SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).parent))
from support import active_session, bench_user, free_port, running  # noqa: E402

from sizzle.db import sqlite_driver  # noqa: E402
from sizzle.db.database import POOL_SIZE, Database  # noqa: E402
from sizzle.db.migrate import upgrade  # noqa: E402
from sizzle.security import create_access_token  # noqa: E402

SECRET = secrets.token_urlsafe(32)
UNLIMITED = "100000000/minute"
# The floor's read: the caller's row and the session's, as Sizzle reads them.
BARE_READ = text(
    "SELECT s.*, u.email, u.is_active, u.tokens_valid_from FROM gpu_sessions s "
    "JOIN users u ON u.id = s.user_id WHERE s.id = :session_id AND u.id = :user_id"
)


def async_url(url: str) -> str:
    """postgresql://... -> postgresql+asyncpg://...; SQLAlchemy URLs pass through."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def pool_options() -> dict[str, Any]:
    """The pool Sizzle's Database has, so that the floor has the same."""
    return {"pool_size": POOL_SIZE, "max_overflow": 0}


def bare_app(database_url: str, user_id: str, *, one_trip: bool = False) -> Starlette:
    engine: AsyncEngine = create_async_engine(database_url, **pool_options())
    if one_trip:
        sqlite_driver.install(engine)

    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime | date) else value

    async def read(request: Request) -> Response:
        async with engine.connect() as connection:
            found = await connection.execute(
                BARE_READ, {"session_id": request.path_params["session_id"], "user_id": user_id}
            )
            row = found.mappings().first()
        if row is None:
            return JSONResponse({"error": {"code": "not_found", "message": "no"}}, 404)
        return JSONResponse({key: plain(value) for key, value in row.items()})

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/healthz", health), Route("/api/v1/sessions/{session_id}", read)]
    )


async def prepare(database_url: str, now: datetime) -> tuple[str, str]:
    """A user with one active session: (user id, session id)."""
    db = Database(database_url)
    try:
        await upgrade(db)
        async with db.transaction() as tx:
            user = await bench_user(tx, now)
            session = active_session(user.id, now, model="llama3.1:8b", instance_id="bench")
            tx.add(session)
            return user.id, session.id
    finally:
        await db.dispose()


async def _on_server(server_url: str, statement: str) -> None:
    server = create_async_engine(async_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await server.dispose()


@contextmanager
def own_postgres(server_url: str) -> Iterator[str]:
    """A database made on the server for this run, dropped afterwards."""
    name = f"sizzle_apibench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_on_server(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(async_url(server_url)).set(database=name).render_as_string(hide_password=False)
        )
    finally:
        # FORCE: a connection a server left open must not keep the database alive.
        asyncio.run(_on_server(server_url, f'DROP DATABASE "{name}" WITH (FORCE)'))


_WRK_TIME = re.compile(r"([\d.]+)(us|ms|s)\b")


Figures = dict[str, float]


def _wrk_figure(pattern: str, out: str) -> str:
    found = re.search(pattern, out, re.MULTILINE)
    if not found:
        raise RuntimeError(f"wrk printed no {pattern!r}:\n{out}")
    return found.group(1)


def _wrk_ms(figure: str) -> float:
    found = _WRK_TIME.fullmatch(figure.strip())
    if not found:
        raise RuntimeError(f"wrk printed {figure!r}")
    value, unit = float(found.group(1)), found.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_with_wrk(
    url: str, headers: dict[str, str], *, connections: int, seconds: float
) -> tuple[Figures, int]:
    """wrk's figures for keep-alive GETs on `connections` connections; (figures, errors)."""
    command = ["wrk", "--latency", f"-t{min(2, connections)}", f"-c{connections}"]
    command += [f"-d{max(1, round(seconds))}s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run(command + [url], capture_output=True, text=True, check=True)  # noqa: S603
    out = done.stdout
    rps = float(_wrk_figure(r"Requests/sec:\s+([\d.]+)", out))
    p50 = _wrk_ms(_wrk_figure(r"^\s+50%\s+(\S+)", out))
    p99 = _wrk_ms(_wrk_figure(r"^\s+99%\s+(\S+)", out))
    # answers other than 2xx, and requests wrk gave up on after its 2 s timeout
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    failed = re.search(r"Socket errors:.*?timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (int(failed.group(1)) if failed else 0)
    return {"rps": round(rps, 1), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2)}, errors


async def _one_connection(
    host: str, port: int, request: bytes, until: float, latencies: list[float]
) -> int:
    """Keep-alive GETs on one connection until `until`; the number of non-200 answers."""
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            errors += b" 200 " not in status_line
    finally:
        writer.close()
    return errors


def load_with_asyncio(
    url: str, headers: dict[str, str], *, connections: int, seconds: float
) -> tuple[Figures, int]:
    """The same, from this process: `connections` bounded keep-alive loops."""
    parsed = make_url(url.replace("http://", "http+x://", 1))
    host, port = parsed.host or "127.0.0.1", int(parsed.port or 80)
    path = url.split(str(port), 1)[1]
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []

    async def load() -> int:
        until = time.perf_counter() + seconds
        counts = await asyncio.gather(
            *(_one_connection(host, port, request, until, latencies) for _ in range(connections))
        )
        return sum(counts)

    started = time.perf_counter()
    errors = asyncio.run(load())
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    figures = {
        "rps": round(len(ordered) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 2),
    }
    return figures, errors


def measure(
    servers: dict[str, tuple[str, dict[str, str]]],
    *,
    concurrencies: list[int],
    seconds: float,
    client: str,
    database: str,
) -> list[dict[str, Any]]:
    load = load_with_wrk if client == "wrk" else load_with_asyncio
    results = []
    for connections in concurrencies:
        floors: dict[str, float] = {}
        for name, (url, headers) in servers.items():
            load(url, headers, connections=connections, seconds=min(2.0, seconds))  # warm up
            figures, errors = load(url, headers, connections=connections, seconds=seconds)
            line: dict[str, Any] = {
                "server": name,
                "database": database,
                "concurrency": connections,
                **figures,
                "errors": errors,
                "client": client,
            }
            if name.startswith("bare"):
                floors[name] = figures["rps"]
            else:
                for floor, key in (
                    ("bare", "ratio_to_bare"),
                    ("bare_one_trip", "ratio_to_one_trip"),
                ):
                    if floors.get(floor):
                        line[key] = round(figures["rps"] / floors[floor], 2)
                line["goal"] = "ratio_to_bare >= 0.5" + (
                    ", p99 <= 50 ms" if connections == 16 else ""
                )
            print(json.dumps(line), flush=True)
            results.append(line)
    return results


def run(database_url: str, home: str, args: argparse.Namespace) -> None:
    now = datetime.now(UTC)
    user_id, session_id = asyncio.run(prepare(database_url, now))
    token = create_access_token(user_id, secret=SECRET, now=now, lifetime=timedelta(hours=2))
    sizzle_port, bare_port, one_trip_port = free_port(), free_port(), free_port()
    env = {
        "SIZZLE_HOME": home,
        "SIZZLE_DATABASE_URL": database_url,
        "SIZZLE_SECRET_KEY": SECRET,
        "SIZZLE_PROVIDERS": "demo",
        "SIZZLE_RATE_LIMIT_PER_USER": UNLIMITED,
        "SIZZLE_RATE_LIMIT_PER_KEY": UNLIMITED,
        "SIZZLE_RATE_LIMIT_PER_IP": UNLIMITED,
    }
    sizzle_command = [sys.executable, "-m", "sizzle", "serve", "--no-jobs"]
    sizzle_command += ["--port", str(sizzle_port)]
    bare_command = [sys.executable, __file__, "--serve-bare", str(bare_port)]
    bare_command += ["--bare-database", database_url, "--bare-user", user_id]
    one_trip_command = [*bare_command, "--bare-one-trip"]
    one_trip_command[one_trip_command.index(str(bare_port))] = str(one_trip_port)
    sizzle_url, bare_url = f"http://127.0.0.1:{sizzle_port}", f"http://127.0.0.1:{bare_port}"
    one_trip_url = f"http://127.0.0.1:{one_trip_port}"
    is_sqlite = make_url(database_url).get_backend_name() == "sqlite"
    path = f"/api/v1/sessions/{session_id}"
    with contextlib.ExitStack() as servers_running:
        servers_running.enter_context(running(sizzle_command, url=f"{sizzle_url}/healthz", env=env))
        servers_running.enter_context(running(bare_command, url=f"{bare_url}/healthz"))
        servers = {"bare": (bare_url + path, {})}
        if is_sqlite:
            servers_running.enter_context(running(one_trip_command, url=f"{one_trip_url}/healthz"))
            servers["bare_one_trip"] = (one_trip_url + path, {})
        servers["sizzle"] = (sizzle_url + path, {"Authorization": f"Bearer {token}"})
        measure(
            servers,
            concurrencies=args.concurrency,
            seconds=args.duration,
            client=args.client,
            database=make_url(database_url).get_backend_name(),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement")
    parser.add_argument(
        "--concurrency",
        type=lambda value: [int(part) for part in value.split(",")],
        default=[16, 64],
        help="connections, comma separated (default 16,64)",
    )
    parser.add_argument(
        "--database",
        help="a PostgreSQL server, e.g. postgresql://postgres@127.0.0.1/postgres: a database "
        "is made there for the run and dropped (default: a SQLite file in a temporary folder)",
    )
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "asyncio"],
        default="auto",
        help="the load generator (auto: wrk when installed)",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--bare-database", help=argparse.SUPPRESS)
    parser.add_argument("--bare-user", help=argparse.SUPPRESS)
    parser.add_argument("--bare-one-trip", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:  # the floor, in a process of its own
        app = bare_app(args.bare_database, args.bare_user, one_trip=args.bare_one_trip)
        uvicorn.run(
            app, host="127.0.0.1", port=args.serve_bare, log_level="warning", access_log=False
        )
        return
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "asyncio"
    with tempfile.TemporaryDirectory() as home:
        if args.database:
            with own_postgres(args.database) as database_url:
                run(database_url, home, args)
        else:
            run(f"sqlite+aiosqlite:///{Path(home) / 'bench.db'}", home, args)


if __name__ == "__main__":
    main()
