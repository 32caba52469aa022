"""Running the client commands against a real Sizzle server on a loopback port.

The server runs in the test's event loop (so the test can drive the jobs and the fake clock
in between); each command runs through typer's CliRunner in a worker thread, over real HTTP.
When `sizzle up` waits between polls, it calls `Driver.sleep`, which runs the test's next
step (say, a jobs pass after moving the clock) on the test's loop instead of sleeping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import typer
from typer.testing import CliRunner, Result

from sizzle.client.commands import Runtime, register
from sizzle.clock import FakeClock
from sizzle.state import AppState
from tests.helpers import PASSWORD, make_user

POLL_SECONDS = 3.0
INTERRUPT = "interrupt"  # a step that is Ctrl-C while `up` waits

Step = Callable[[], Coroutine[Any, Any, None]] | str


class Driver:
    """`up`'s sleep: each wait runs the next step the test queued, on the test's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.steps: list[Step] = []
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if not self.steps:
            raise AssertionError("`sizzle up` waited more often than the test expected")
        step = self.steps.pop(0)
        if step == INTERRUPT:
            raise KeyboardInterrupt
        assert callable(step)
        asyncio.run_coroutine_threadsafe(step(), self.loop).result(timeout=30)


@dataclass
class Sizzle:
    """Runs `sizzle <args>` against the served app; `api` talks to the same server."""

    url: str
    config_dir: Path
    driver: Driver
    api: httpx.AsyncClient
    env: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app = typer.Typer()
        register(self.app, Runtime(sleep=self.driver.sleep, poll_seconds=POLL_SECONDS))
        self.runner = CliRunner()

    async def __call__(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        environment: dict[str, str | None] = {
            "SIZZLE_API_URL": self.url,
            "SIZZLE_CONFIG_DIR": str(self.config_dir),
            "SIZZLE_API_KEY": None,
            "COLUMNS": "200",
            **self.env,
            **env,
        }

        def invoke() -> Result:
            return self.runner.invoke(self.app, list(args), input=input, env=environment)

        return await asyncio.to_thread(invoke)

    @property
    def credentials_file(self) -> Path:
        return self.config_dir / "credentials.json"

    def stored(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.credentials_file.read_text())
        return data


@dataclass
class Account:
    email: str
    key: str  # what `sizzle login` stored

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


async def logged_in(
    sizzle: Sizzle,
    clock: FakeClock,
    state: AppState,
    *,
    credit_usd: str = "0",
    free_minutes: int = 5,
) -> Account:
    """A user made in the database, then `sizzle login` with their email and password."""
    user = await make_user(
        state.db, now=clock.now(), credit_usd=credit_usd, free_minutes=free_minutes
    )
    result = await sizzle("login", "--email", user.email, "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    return Account(user.email, sizzle.stored()["key"])


def parsed(result: Result) -> Any:
    """stdout as exactly one JSON document (json.loads refuses anything around it)."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def error_line(result: Result) -> str:
    """The `error: ...` line of stderr."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]
