"""The chat relay: an OpenAI-compatible request forwarded to a session's Ollama, the answer
passed back as it comes, and every request counted on the session. Whole JSON answers
(`post_json`) serve the embeddings too (services/embeddings.py).

Streaming answers are relayed event by event, never gathered first. When the client goes
away, the relay is cancelled inside its read from the node, and closing that upstream
response drops the node's connection, which makes Ollama stop generating. An answer read to
its end leaves its connection open for the next request to the node (keep-alive).

The node is asked with aiohttp: this is the hot path of every chat, and its C parser and
thin layers add about half the time of httpx's to the first token.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import anyio
import structlog

from sizzle.clock import Clock
from sizzle.db.database import Database
from sizzle.db.models import ChatRequest
from sizzle.errors import (
    BadGateway,
    BadRequest,
    GatewayTimeout,
    NotFound,
    RateLimited,
    SizzleError,
    ValidationFailed,
)
from sizzle.services.activity import ActivityRecorder
from sizzle.services.batched import BatchedWrites
from sizzle.services.chat_saving import ChatSaver, SavedTurn
from sizzle.services.workspace import ChatTarget, require_vision_for_images

log = structlog.get_logger(__name__)

CHAT_PATH = "/v1/chat/completions"
DONE = b"data: [DONE]\n\n"
# After [DONE], how long the rest of the answer (the end of its chunked body) may take to
# arrive: read to the end, the connection goes back to the pool instead of being dropped.
DRAIN_SECONDS = 1.0
# Idle connections to nodes are dropped before a server's usual 5 s keep-alive would close
# them, so a request is not sent on a connection the node is closing.
KEEPALIVE_SECONDS = 4.0


@dataclass
class ChatMeter:
    """What one request cost and how fast it went, filled in as the answer passes through."""

    model: str
    stream: bool
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    content_chunks: int = 0
    outcome: str = "ok"
    status_code: int = 200
    error: str | None = None

    def observe_chunk(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
            if delta.get("content") or delta.get("tool_calls") or delta.get("reasoning"):
                self.content_chunks += 1
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
        self.observe_usage(chunk.get("usage"))

    def observe_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(prompt, int):
                self.prompt_tokens = prompt
            if isinstance(completion, int):
                self.completion_tokens = completion

    def fail(self, outcome: str, status_code: int, error: str) -> None:
        self.outcome, self.status_code, self.error = outcome, status_code, error[:2000]

    def as_row(self, session_id: str, now: datetime) -> ChatRequest:
        ended = time.perf_counter()
        completion = self.completion_tokens
        if completion is None and self.stream and self.content_chunks:
            # Without a usage report, Ollama's stream carries one token per content chunk.
            completion = self.content_chunks
        return ChatRequest(
            session_id=session_id,
            model=self.model,
            stream=self.stream,
            outcome=self.outcome,
            status_code=self.status_code,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=completion,
            time_to_first_token_ms=(
                round((self.first_token_at - self.started) * 1000)
                if self.first_token_at is not None
                else None
            ),
            duration_ms=round((ended - self.started) * 1000),
            error=self.error,
            created_at=now,
        )


def upstream_body(body: dict[str, Any], target: ChatTarget) -> tuple[dict[str, Any], bool]:
    """The body for the node: the session's own model name, and usage asked for on streams.
    Also whether the client itself asked for the usage chunk (else it is not passed on).
    A 400 for an image to a model that cannot see images."""
    require_vision_for_images(target.model, body.get("messages"))
    forwarded = {**body, "model": target.model}
    wants_usage = False
    if body.get("stream"):
        options = body.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        wants_usage = bool(options.get("include_usage"))
        forwarded["stream_options"] = {**options, "include_usage": True}
    return forwarded, wants_usage


def _upstream_message(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    text = raw.decode("utf-8", "replace").strip()
    return text[:500] or f"HTTP {status}"


def _refusal(status: int, raw: bytes) -> SizzleError:
    """The node's refusal as our error: its 4xx kept, its 5xx a 502."""
    message = f"the model server said: {_upstream_message(status, raw)}"
    if status == 404:
        return NotFound(message, code="model_not_found")
    if status == 429:
        return RateLimited(message)
    if status == 422:
        return ValidationFailed(message, code="upstream_rejected")
    if 400 <= status < 500:
        return BadRequest(message, code="upstream_rejected")
    return BadGateway(message)


def _error_event(code: str, message: str) -> bytes:
    return b"data: " + json.dumps({"error": {"code": code, "message": message}}).encode() + b"\n\n"


class ChatProxy:
    """Relays chat requests to sessions' model servers over one pooled HTTP client."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        connect_timeout_seconds: float = 10.0,
        read_timeout_seconds: float = 300.0,
        activity: ActivityRecorder | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.recorder = ChatRecorder(db)
        self.saver = ChatSaver(db, clock)  # saved chats' messages, written like the counts
        self.activity = activity  # a request's end is a use of its session too (a long answer)
        # Loading a big model can take minutes before the first byte; reads may wait long.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_seconds, sock_read=read_timeout_seconds
        )
        self._http: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The pooled client, made on first use: it belongs to the running event loop."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(
                    limit=1000, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS
                ),
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        await self.recorder.close()
        await self.saver.close()

    async def complete(
        self, target: ChatTarget, body: dict[str, Any], *, turn: SavedTurn | None = None
    ) -> dict[str, Any]:
        """A whole (non-streaming) answer; saved as `turn` if given."""
        forwarded, _ = upstream_body(body, target)
        return await self.post_json(target, CHAT_PATH, forwarded, turn=turn)

    async def post_json(
        self,
        target: ChatTarget,
        path: str,
        forwarded: dict[str, Any],
        *,
        turn: SavedTurn | None = None,
    ) -> dict[str, Any]:
        """The node's whole JSON answer to `forwarded` at `path`, counted on the session (and
        saved as `turn`, a chat's answer, if given)."""
        meter = ChatMeter(model=target.model, stream=False)
        try:
            async with self._client().post(
                _url(target, path), json=forwarded, headers=target.headers
            ) as response:
                status, raw = response.status, await response.read()
            if status != 200:
                error = _refusal(status, raw)
                meter.fail("upstream_error", error.status_code, error.message)
                raise error
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                meter.fail("failed", 502, "the model server's answer is not a JSON object")
                raise BadGateway("the model server's answer is not a JSON object")
            meter.observe_usage(answer.get("usage"))
            if turn is not None:
                turn.observe(answer)
            return answer
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = _transport_error(exc)
            meter.fail("failed", error.status_code, error.message)
            raise error from exc
        finally:
            await self._record(target, meter, turn)

    async def open_stream(
        self, target: ChatTarget, body: dict[str, Any], *, turn: SavedTurn | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Send the request; once the node has answered 200, the events to relay (and the
        answer saved as `turn`, if given, as it arrives).

        A refusal before the answer starts raises here, so the client gets a proper status."""
        meter = ChatMeter(model=target.model, stream=True)
        forwarded, wants_usage = upstream_body(body, target)
        try:
            response = await self._client().post(
                _url(target, CHAT_PATH), json=forwarded, headers=target.headers
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = _transport_error(exc)
            meter.fail("failed", error.status_code, error.message)
            await self._record(target, meter, turn)
            raise error from exc
        if response.status != 200:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                raw = b""
            finally:
                response.release()
            error = _refusal(response.status, raw)
            meter.fail("upstream_error", error.status_code, error.message)
            await self._record(target, meter, turn)
            raise error
        return self._relay(target, response, meter, turn, wants_usage=wants_usage)

    async def _relay(
        self,
        target: ChatTarget,
        response: aiohttp.ClientResponse,
        meter: ChatMeter,
        turn: SavedTurn | None,
        *,
        wants_usage: bool,
    ) -> AsyncGenerator[bytes, None]:
        finished = False
        try:
            pending = bytearray()
            async for received in response.content.iter_any():
                pending += received
                *lines, rest = pending.split(b"\n")
                pending = rest
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue  # blank separators and SSE comments
                    data = bytes(line[5:].strip())
                    if data == b"[DONE]":
                        finished = True
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        chunk = None
                    if isinstance(chunk, dict):
                        meter.observe_chunk(chunk)
                        if turn is not None:
                            turn.observe(chunk)  # in memory: written in a later batch
                        if "error" in chunk:
                            meter.fail("upstream_error", 200, _upstream_message(200, data))
                        elif not wants_usage and chunk.get("usage") and not chunk.get("choices"):
                            continue  # the usage chunk we asked for on our own account
                    yield b"data: " + data + b"\n\n"  # passed on as the node wrote it
                if finished:
                    break
            if finished:
                yield DONE
                await _drain(response)
            elif meter.outcome == "ok":
                meter.fail("failed", 502, "the model server ended the answer early")
                yield _error_event("upstream_error", "the model server ended the answer early")
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = _transport_error(exc)
            meter.fail("failed", error.status_code, error.message)
            yield _error_event(error.code, error.message)
        except BaseException:
            # Cancelled (the client went away) or the response torn down: the node stops too.
            meter.fail("cancelled", 499, "the client went away before the answer ended")
            raise
        finally:
            if response.content.at_eof():
                response.release()  # read to its end: the connection goes back to the pool
            else:
                response.close()  # dropping the connection makes the node stop generating
            with anyio.CancelScope(shield=True):
                await self._record(target, meter, turn)

    async def _record(
        self, target: ChatTarget, meter: ChatMeter, turn: SavedTurn | None = None
    ) -> None:
        row = meter.as_row(target.session_id, self.clock.now())
        self.recorder.add(row)
        if turn is not None:
            turn.finish(
                meter.outcome, prompt_tokens=row.prompt_tokens, completion=row.completion_tokens
            )
        if self.activity is not None:
            self.activity.touch(target.session_id)


class ChatRecorder(BatchedWrites):
    """Writes chat requests' rows in batches, off the requests' path: at most one insert per
    `flush_seconds` however many chats run, and what is pending on shutdown. A crash loses at
    most that interval's counts; they are statistics, never money."""

    def __init__(self, db: Database, *, flush_seconds: float = 1.0) -> None:
        super().__init__(flush_seconds=flush_seconds)
        self.db = db
        self._pending: list[ChatRequest] = []

    def add(self, row: ChatRequest) -> None:
        self._pending.append(row)
        self.flush_soon()

    async def flush(self) -> None:
        """Write what is pending now."""
        rows, self._pending = self._pending, []
        if not rows:
            return
        try:
            async with self.db.transaction() as tx:
                tx.add_all(rows)
        except Exception as exc:  # counting must never break a chat
            log.warning("chat.record_failed", rows=len(rows), error=str(exc))


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read what follows [DONE] (the end of the body), so the connection can be kept."""
    with anyio.move_on_after(DRAIN_SECONDS):
        async for _ in response.content.iter_any():
            pass


def _url(target: ChatTarget, path: str) -> str:
    return f"{target.base_url.rstrip('/')}{path}"


def _transport_error(exc: Exception) -> SizzleError:
    if isinstance(exc, TimeoutError):  # aiohttp's connect and read timeouts are TimeoutErrors
        return GatewayTimeout("the session's model server did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return BadGateway(
            "the session's model server cannot be reached", code="upstream_unavailable"
        )
    return BadGateway(f"the connection to the session's model server broke: {type(exc).__name__}")
