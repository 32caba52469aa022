"""Writes gathered in memory and made together, off the requests' path: what a chat counts."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod


class BatchedWrites(ABC):
    """At most one `flush` per `flush_seconds` however much is added, and one more on close
    for what is still pending. Subclasses keep what is pending and write it in `flush`."""

    def __init__(self, *, flush_seconds: float) -> None:
        self.flush_seconds = flush_seconds
        self._flusher: asyncio.Task[None] | None = None

    @abstractmethod
    async def flush(self) -> None:
        """Write what is pending now (and never raise: a write must not break a request)."""

    def flush_soon(self) -> None:
        """Something was added: flush within `flush_seconds` (outside an event loop, at the
        next flush or close)."""
        if self._flusher is None or self._flusher.done():
            with contextlib.suppress(RuntimeError):  # no running loop
                self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_seconds)
        await self.flush()

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
