"""The allowed-hosts check: a request whose Host header names another site is refused."""

from __future__ import annotations

from collections.abc import Sequence

from starlette._utils import parse_host_header
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

# Probed by address, not by name (Docker's health checks, Prometheus finding each replica by
# DNS); they answer the same to everyone and build no link.
UNCHECKED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class AllowedHosts(TrustedHostMiddleware):
    """Starlette's TrustedHostMiddleware (its patterns: names and `*.example.com`), answering
    in the house error shape, and leaving the probes above to anyone."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        super().__init__(app, allowed_hosts=allowed_hosts, www_redirect=False)

    def allows(self, host_header: str | None) -> bool:
        parsed = parse_host_header(host_header)
        if parsed is None:
            return False
        host = parsed.host.lower()
        return any(
            host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
            for pattern in self.allowed_hosts
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.allow_any
            or scope["type"] not in ("http", "websocket")
            or scope["path"] in UNCHECKED_PATHS
            or self.allows(Headers(scope=scope).get("host"))
        ):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {
                "error": {
                    "code": "invalid_host",
                    "message": "this server does not answer for that host name",
                }
            },
            status_code=400,
        )
        await response(scope, receive, send)
