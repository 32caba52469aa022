"""The operator's audit log page: filters, pages, and the same rows as CSV."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from sizzle.api.deps import PagingDep, StateDep
from sizzle.api.routers.admin_audit import CSV_ROWS, csv_download
from sizzle.db.models import User
from sizzle.errors import ValidationFailed
from sizzle.services import audit
from sizzle.state import AppState
from sizzle.web.deps import Operator
from sizzle.web.render import render
from sizzle.web.routes.admin import clean

router = APIRouter(include_in_schema=False)

NOBODY = "-"  # a user filter that matched no account: no rows, rather than every row


class AuditForm:
    """The filters as the page's form sends them: a user by email or id, whole days."""

    def __init__(
        self,
        action: Annotated[str, Query(max_length=64)] = "",
        actor: Annotated[str, Query(max_length=64)] = "",
        user: Annotated[str, Query(max_length=320)] = "",
        ip: Annotated[str, Query(max_length=64)] = "",
        since: Annotated[str, Query(max_length=10)] = "",
        until: Annotated[str, Query(max_length=10)] = "",
    ) -> None:
        self.action = clean(action)
        self.actor = clean(actor)
        self.user = clean(user)
        self.ip = clean(ip)
        self.since = clean(since)
        self.until = clean(until)

    def query(self) -> dict[str, str]:
        return {key: value for key, value in vars(self).items() if value}

    async def to_filter(self, state: AppState) -> audit.AuditFilter:
        user_id: str | None = None
        if self.user:
            async with state.db.read() as tx:
                found = await tx.scalar(
                    select(User.id).where(
                        (User.email == self.user.lower()) | (User.id == self.user)
                    )
                )
            user_id = found or NOBODY
        first = _day(self.since, "from")
        last = _day(self.until, "to")
        return audit.AuditFilter(
            action=self.action or None,
            actor=self.actor or None,
            user_id=user_id,
            ip=self.ip or None,
            since=datetime.combine(first, time(), tzinfo=UTC) if first else None,
            # "To 26 November" includes that whole day (and the last day of all, every day).
            until=(
                datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)
                if last and last < date.max
                else None
            ),
        )


def _day(text: str, what: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValidationFailed(f"the {what} date must look like 2026-11-26") from exc


FormDep = Annotated[AuditForm, Depends()]


@router.get("/admin/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request, state: StateDep, user: Operator, form: FormDep, paging: PagingDep
) -> Response:
    where = await form.to_filter(state)
    async with state.db.read() as tx:
        rows, total = await audit.search(tx, where, limit=paging.limit, offset=paging.offset)
        ids = {row.user_id for row in rows if row.user_id}
        found = await tx.execute(select(User.id, User.email).where(User.id.in_(ids)))
        emails = {row.id: row.email for row in found}
    query = form.query()
    return render(
        request,
        "admin/audit.html",
        user=user,
        rows=rows,
        emails=emails,
        total=total,
        paging=paging,
        form=form,
        filters=urlencode(query),
        csv_rows=CSV_ROWS,
    )


@router.get("/admin/audit.csv")
async def audit_csv(state: StateDep, _user: Operator, form: FormDep) -> Response:
    return await csv_download(state, await form.to_filter(state))
