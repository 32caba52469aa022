"""Benchmark: how long Sizzle takes to start, against floors measured in the same run.

    python bench/startup.py --repeat 3

Three figures, each the median of --repeat fresh processes:

- `import`: `python -c "import sizzle.api.app"` (the app and everything it imports);
- `serve`: `sizzle serve` on a loopback port with a fresh SQLite home, from the process start
  until /healthz answers (imports, the first migration of the SQLite file, the app);
- the floors: a bare `python -c pass`, and `import fastapi` (what any FastAPI app pays).

It prints one JSON line per figure: {"what", "seconds", "floor_seconds", "floor"}, and the
modules that `-X importtime` says take longest to import (cumulative, in milliseconds).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SERVE_DEADLINE_SECONDS = 60


def _seconds_to_run(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 - our own code
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seconds_to_serve() -> float:
    """From the start of `sizzle serve` to its first 200 on /healthz."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "SIZZLE_HOME": home,
            "SIZZLE_DATABASE_URL": "",
            "SIZZLE_HOST": "127.0.0.1",
            "SIZZLE_PORT": str(port),
        }
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "sizzle", "serve", "--no-jobs"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"sizzle serve exited with {process.returncode}")
                if time.perf_counter() - started > SERVE_DEADLINE_SECONDS:
                    raise SystemExit("sizzle serve did not answer /healthz in time")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                        return time.perf_counter() - started
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.02)
        finally:
            process.terminate()
            process.wait(timeout=10)


def _slowest_imports(count: int) -> list[tuple[str, float]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import sizzle.api.app"],
        check=True,
        capture_output=True,
        text=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].strip(), int(parts[1]) / 1000))
    # only third-party packages' tops and Sizzle's own modules say where time goes
    tops = [(name, ms) for name, ms in rows if "." not in name or name.startswith("sizzle.")]
    return sorted(tops, key=lambda row: row[1], reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    def median(measure: object) -> float:
        assert callable(measure)
        return statistics.median(measure() for _ in range(args.repeat))

    bare = median(lambda: _seconds_to_run("pass"))
    fastapi = median(lambda: _seconds_to_run("import fastapi"))
    app = median(lambda: _seconds_to_run("import sizzle.api.app"))
    serve = median(_seconds_to_serve)
    figures = [
        ("import fastapi", fastapi, bare, "python -c pass"),
        ("import sizzle.api.app", app, fastapi, "import fastapi"),
        ("sizzle serve to /healthz", serve, fastapi, "import fastapi"),
    ]
    for what, seconds, floor, floor_name in figures:
        print(
            json.dumps(
                {
                    "what": what,
                    "seconds": round(seconds, 3),
                    "floor_seconds": round(floor, 3),
                    "floor": floor_name,
                }
            )
        )
    print(json.dumps({"slowest_imports_ms": _slowest_imports(12)}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
