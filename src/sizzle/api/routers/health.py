"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from sizzle.api.deps import StateDep
from sizzle.db.migrate import is_current

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
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
