"""What the benches that serve Sizzle share: a free port, a server process running for a block,
and the bench's users and active sessions made straight in the database."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import GpuSession, User
from sizzle.domain.tiers import TIERS
from sizzle.services import accounts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(
    command: list[str],
    *,
    url: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    start_seconds: float = 60,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, from the moment `url` answers until the block ends; its output goes to
    `log` (shown if it fails to start), or nowhere."""
    with log.open("wb") if log else open(os.devnull, "wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, env={**os.environ, **(env or {})}, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + start_seconds
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    said = f":\n{log.read_text()}" if log else ""
                    raise RuntimeError(f"{command[:3]} did not start{said}") from None
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


async def bench_user(
    tx: AsyncSession, now: datetime, *, email: str = "bench@example.com", free_minutes: int = 0
) -> User:
    return await accounts.create_user(
        tx, email=email, password=secrets.token_urlsafe(16), now=now, free_minutes=free_minutes
    )


def active_session(user_id: str, now: datetime, **columns: Any) -> GpuSession:
    """A starter session of `user_id` billing since `now` (columns may say otherwise)."""
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "user_id": user_id,
        "tier": "starter",
        "status": "active",
        "provider": "demo",
        "gpu_type": "RTX 4090",
        "gpu_count": 1,
        "price_micros_per_minute": TIERS["starter"].price_micros_per_minute,
        "charged_minutes": 0,
        "active_ms_before": 0,
        "active_since_ms": int(now.timestamp() * 1000),
        "created_at": now,
        "started_at": now,
    }
    return GpuSession(**{**values, **columns})
