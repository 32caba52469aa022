"""The app factory: routers, error mapping (once, here), and the background jobs' lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sizzle import __version__
from sizzle.api import openapi, validation_text
from sizzle.api.deps import limit_by_address
from sizzle.api.hosts import AllowedHosts
from sizzle.api.routers import (
    account,
    admin,
    admin_audit,
    attachments,
    auth,
    billing,
    catalog,
    conversations,
    health,
    keys,
    launch_queue,
    models,
    notifications,
    openai,
    sessions,
    ssh_keys,
    subscription,
)
from sizzle.errors import RateLimited, SizzleError
from sizzle.logging import RequestContext
from sizzle.metrics import RequestTimer
from sizzle.settings import Settings
from sizzle.state import AppState
from sizzle.web import assets
from sizzle.web import routes as web_routes
from sizzle.web.deps import SignInRequired
from sizzle.web.errors import error_page, sign_in_redirect, wants_page
from sizzle.web.security import refuse_nul_in_query

log = structlog.get_logger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def create_app(
    settings: Settings | None = None, *, state: AppState | None = None, run_jobs: bool = True
) -> FastAPI:
    """A Sizzle app; `run_jobs=False` leaves the background jobs to the caller (tests, replicas)."""
    state = state or AppState.build(settings or Settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_jobs:
            state.jobs.start()
        try:
            yield
        finally:
            await state.close()

    app = FastAPI(
        title="Sizzle",
        version=__version__,
        description='Rent a GPU by the minute. Errors are `{"error": {"code", "message"}}`.',
        lifespan=lifespan,
    )
    app.state.sizzle = state
    app.add_middleware(AllowedHosts, allowed_hosts=state.settings.trusted_hosts)
    app.add_middleware(RequestTimer, metrics=state.metrics)
    app.add_middleware(RequestContext)  # added last: outermost, so every line has the id
    app.include_router(health.router)
    # the hot routes first: a request is matched against the routes in order
    for module in (
        sessions,
        launch_queue,
        auth,
        account,
        notifications,
        keys,
        ssh_keys,
        conversations,
        catalog,
        models,
        billing,
        subscription,
        admin,
        admin_audit,
        openai,
        attachments,
    ):
        app.include_router(module.router, dependencies=[Depends(limit_by_address)])
    for page_module in web_routes.PAGE_MODULES:
        app.include_router(page_module.router, dependencies=[Depends(refuse_nul_in_query)])
    assets.install(app)
    _install_error_handlers(app)
    openapi.install(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def _sign_in(_request: Request, exc: SignInRequired) -> Response:
        return sign_in_redirect(exc)

    @app.exception_handler(SizzleError)
    async def _domain(request: Request, exc: SizzleError) -> Response:
        if wants_page(request):
            response = await error_page(request, exc.status_code, exc.code, exc.message)
        else:
            extra = {"details": exc.details} if exc.details else {}
            response = error_response(exc.status_code, exc.code, exc.message, **extra)
        if isinstance(exc, RateLimited) and exc.retry_after:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        details = [
            {
                "field": validation_text.field_name(err.get("loc", ())),
                "type": err.get("type"),
                "problem": validation_text.sentence(err),
            }
            for err in errors
        ]
        message = validation_text.summary(errors)
        if wants_page(request):
            return await error_page(request, 422, "validation_error", message)
        return error_response(422, "validation_error", message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "error")
        if wants_page(request):
            return await error_page(request, exc.status_code, code, str(exc.detail))
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("request.failed", path=request.url.path)
        if wants_page(request):
            return await error_page(request, 500, "internal_error", "")
        return error_response(500, "internal_error", "something went wrong on our side")
