"""Liveness, readiness, and the Prometheus metrics."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text

from sizzle.api.deps import StateDep
from sizzle.api.openapi import error_responses
from sizzle.db.migrate import is_current
from sizzle.errors import Unauthorized

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class ReadyOut(BaseModel):
    status: str = Field(description="ready or not_ready")
    checks: dict[str, str] = Field(description="Each check: ok, or what is wrong.")


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Not ready: a check is not ok."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with state.db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
        checks["migrations"] = "ok" if await is_current(state.db) else "pending"
    except Exception as exc:  # readiness reports the failure instead of raising it
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **error_responses(401)},
)
async def metrics(state: StateDep, authorization: Annotated[str, Header()] = "") -> Response:
    """Prometheus metrics (see sizzle/metrics.py): the database's figures are read now.
    With SIZZLE_METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
    wanted = state.settings.metrics_token
    if wanted and not hmac.compare_digest(authorization.encode(), f"Bearer {wanted}".encode()):
        raise Unauthorized("send Authorization: Bearer <SIZZLE_METRICS_TOKEN>")
    await state.metrics.refresh(state.db, state.orchestrator, now=state.clock.now())
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
