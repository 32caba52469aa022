"""The audit log for operators: filtered, paged, and as CSV."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from sizzle.api.deps import AdminUser, PagingDep, StateDep
from sizzle.api.schemas import CleanStr, Moment, Page
from sizzle.services import audit
from sizzle.state import AppState

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

CSV_ROWS = 100_000  # one download; narrow the filters for more


def audit_filter(
    action: Annotated[
        CleanStr | None,
        Query(max_length=64, description='One action, or a family ending in "." (`auth.`).'),
    ] = None,
    actor: Annotated[
        CleanStr | None,
        Query(max_length=64, description="`user:<id>`, `operator:<id>`, `system:…`"),
    ] = None,
    user_id: Annotated[
        CleanStr | None, Query(max_length=32, description="The account concerned.")
    ] = None,
    ip: Annotated[CleanStr | None, Query(max_length=64)] = None,
    since: Annotated[Moment | None, Query(description="From this moment (ISO 8601).")] = None,
    until: Annotated[Moment | None, Query(description="Before this moment (ISO 8601).")] = None,
) -> audit.AuditFilter:
    return audit.AuditFilter(
        action=action or None,
        actor=actor or None,
        user_id=user_id or None,
        ip=ip or None,
        since=since,
        until=until,
    )


FilterDep = Annotated[audit.AuditFilter, Depends(audit_filter)]


@router.get("/audit", response_model=Page[audit.AuditRow])
async def audit_log(
    _admin: AdminUser, state: StateDep, where: FilterDep, paging: PagingDep
) -> Page[audit.AuditRow]:
    """Sign-ins and failures, key changes, session changes, ledger entries, account and
    operator actions, newest first; with who, from which address and browser."""
    async with state.db.read() as tx:
        rows, total = await audit.search(tx, where, limit=paging.limit, offset=paging.offset)
    return Page(items=rows, total=total)


@router.get(
    "/audit.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def audit_csv(_admin: AdminUser, state: StateDep, where: FilterDep) -> Response:
    """The same rows as CSV (at most 100,000; narrow the filters for more)."""
    return await csv_download(state, where)


async def csv_download(state: AppState, where: audit.AuditFilter) -> Response:
    """The matching rows as a CSV file (the API's and the operator page's)."""
    async with state.db.read() as tx:
        rows = await audit.every_row(tx, where, most=CSV_ROWS)
    return Response(
        audit.as_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="sizzle-audit.csv"'},
    )
