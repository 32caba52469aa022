"""Time, injected: services ask a Clock, tests move a FakeClock instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds, the unit the meter does its arithmetic in."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class FileClock:
    """Reads epoch seconds from a file, so a test can move the time of a server process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = datetime.fromtimestamp(time.time(), tz=UTC)

    def now(self) -> datetime:
        try:
            self._last = datetime.fromtimestamp(float(self.path.read_text().strip()), tz=UTC)
        except (OSError, ValueError):
            pass  # a write in progress: keep the last time read, never jump to the real one
        return self._last
