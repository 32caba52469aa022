"""Real `sizzle` processes for the tests that need more than one process, or a crash."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from tests.conftest import SECRET_SCANNER, TEST_SECRET


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SizzleProcesses:
    """Runs `sizzle …` commands and named `sizzle` processes (`serve`, `worker`) on one
    database, the demo provider and one file clock, each process logging to its own file.

    `env` overrides or adds settings for every command and process: the intervals, free
    minutes and such that a test wants. Only the file clock decides the processes' time; the
    real waits just poll, with a timeout, and fail if a process exits that was not killed.
    Use it as a context manager, or call `stop_all`, so that nothing outlives the test.
    """

    wait_seconds: float = 10  # how long `until` waits unless told
    start_seconds: float = 20  # how long `serve` waits for /healthz

    def __init__(self, tmp_path: Path, database_url: str, **env: str) -> None:
        self.tmp_path = tmp_path
        self.clock_file = tmp_path / "clock"
        self.env = {
            **os.environ,
            "SIZZLE_DATABASE_URL": database_url,
            "SIZZLE_SECRET_KEY": TEST_SECRET,
            "SIZZLE_HOME": str(tmp_path / "home"),
            "SIZZLE_HOST": "127.0.0.1",
            "SIZZLE_PROVIDERS": "demo",
            "SIZZLE_TEST_CLOCK_FILE": str(self.clock_file),
            **env,
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[str] = set()
        self.scanned: set[str] = set()  # logs read for secrets, once each has ended

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()

    def set_clock(self, epoch_seconds: float) -> None:
        """Move every process's time: write a temp file, then rename it over the clock file."""
        temporary = self.clock_file.with_suffix(".tmp")
        temporary.write_text(repr(epoch_seconds))
        os.replace(temporary, self.clock_file)

    def cli(self, *args: str, **env: str) -> None:
        """Run `sizzle *args` to the end; it must succeed."""
        done = subprocess.run(
            [sys.executable, "-m", "sizzle", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"sizzle {' '.join(args)}: {done.stdout}{done.stderr}"

    def start(self, name: str, *args: str, **env: str) -> None:
        """Start `sizzle *args` in the background as process `name`, logging to `log(name)`."""
        assert name not in self.processes, f"a process is already named {name}"
        with self.log(name).open("wb") as out:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "sizzle", *args],
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def serve(self, name: str, *args: str) -> str:
        """Start `sizzle serve *args` on a free port; its base URL once /healthz answers."""
        port = _free_port()
        self.start(name, "serve", *args, SIZZLE_PORT=str(port))
        base_url = f"http://127.0.0.1:{port}"

        async def healthy() -> bool:
            try:
                async with httpx.AsyncClient(base_url=base_url, timeout=1) as http:
                    return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await self.until(healthy, f"{name} to come up", timeout=self.start_seconds)
        return base_url

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hooks, no last metering pass, connections just drop."""
        self.killed.add(name)
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        """Terminate every process still running, and wait for them (killing any that hang)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for name in self.processes.keys() - self.scanned:
            SECRET_SCANNER.scan_file(self.log(name), where=f"the `sizzle` process {name!r}")
            self.scanned.add(name)

    def log(self, name: str) -> Path:
        return self.tmp_path / f"{name}.log"

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {name}\n{self.log(name).read_text(errors='replace')[-1500:]}"
            for name in self.processes
        )

    async def until(
        self, check: Callable[[], Awaitable[bool]], what: str, *, timeout: float | None = None
    ) -> None:
        """Poll `check` until it holds; fail after `timeout` (`wait_seconds` unless told), or
        as soon as a process exits that was not killed on purpose."""
        deadline = time.monotonic() + (self.wait_seconds if timeout is None else timeout)
        while not await check():
            for name, process in self.processes.items():
                if name not in self.killed:
                    assert process.poll() is None, f"{name} exited: {self.log_tails()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.log_tails()}"
            await asyncio.sleep(0.05)
