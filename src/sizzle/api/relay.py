"""Relaying a model's streamed answer to a client: the API's and the web chat's one response."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
import structlog
from fastapi.responses import StreamingResponse
from starlette.types import Send

log = structlog.get_logger(__name__)


class RelayResponse(StreamingResponse):
    """A stream that gives up on a client that stops reading.

    Each event is handed to the server with a deadline: when the client has stopped reading
    and the buffers between are full, the hand-over blocks, and after `stall_seconds` the
    stream is closed, which closes the request to the node, so the GPU stops generating."""

    def __init__(self, content: AsyncGenerator[bytes, None], *, stall_seconds: float) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._events = content
        self.stall_seconds = stall_seconds

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            async for event in self._events:
                with anyio.fail_after(self.stall_seconds):
                    await send({"type": "http.response.body", "body": event, "more_body": True})
        except TimeoutError:
            log.info("chat.client_stalled", stall_seconds=self.stall_seconds)
            await self._events.aclose()
            return  # the response stays unfinished: the server drops the connection
        await send({"type": "http.response.body", "body": b"", "more_body": False})
