"""Logging: structlog and the standard library (uvicorn, alembic) through one formatter,
readable lines on a terminal and JSON lines otherwise; each line of an HTTP request carries
its request id, and its session id where the path names one. The request's address and
browser are kept for the audit log."""

from __future__ import annotations

import logging
import re
import sys
import uuid
from typing import Any

import structlog

from sizzle.services.audit import request_scope

_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: str = "INFO") -> None:
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer()
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer()
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # asyncssh logs every channel at INFO: each request through a tunnel would be a line
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").addFilter(_HIDE_LINK_TOKENS)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&])token=)[^&#\s]*")


class _HideLinkTokens(logging.Filter):
    """uvicorn's access lines name the path with its query: a link from a mail (reset the
    password, confirm the address) carries its token there, and the log must not."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs '%s - "%s %s HTTP/%s" %d' with (client, method, path?query, version, status)
        if isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            path = _TOKEN_IN_QUERY.sub(r"\1[hidden]", str(path))
            record.args = (client, method, path, version, status)
        return True


_HIDE_LINK_TOKENS = _HideLinkTokens()


class RequestContext:
    """ASGI middleware: every log line of a request carries its `request_id` (the caller's
    `X-Request-ID` when it is a sane token, else a new one), which the response echoes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        serving = request_scope.set(scope)
        try:
            await self.app(scope, receive, sending)
        finally:
            request_scope.reset(serving)
            structlog.contextvars.clear_contextvars()


def log_session_id(session_id: str) -> str:
    """A path validator for session ids: the request's log lines name the session too."""
    structlog.contextvars.bind_contextvars(session_id=session_id)
    return session_id
