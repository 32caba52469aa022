"""Operator pages (admins only): providers, sessions, users, revenue. Purchases and refunds
are in admin_purchases.py."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.api.deps import PagingDep, StateDep
from sizzle.api.schemas import usd
from sizzle.api.views import session_out
from sizzle.db.models import LaunchAttempt, SessionEvent, User
from sizzle.domain.lab import LAB_NAME
from sizzle.domain.lifecycle import EndReason
from sizzle.domain.money import usd_to_micros
from sizzle.domain.suspension import MAX_NOTE, REASON_LABELS, SuspensionReason
from sizzle.domain.tiers import PLANS
from sizzle.errors import Conflict, NotFound, SizzleError, ValidationFailed
from sizzle.services import accounts, launch_queue, provider_listings, reports, sessions
from sizzle.state import AppState
from sizzle.web.deps import CsrfChecked, Operator
from sizzle.web.render import render

router = APIRouter(include_in_schema=False)

MAX_GRANT_USD = 100_000
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_AMOUNT = re.compile(r"(\d+)(?:\.(\d*))?|\.(\d+)")
_DONE = {
    "granted": "Granted ${amount} of credit to {email}.",
    "suspended": "{email} is suspended: they can no longer sign in or use the API, and their "
    "sessions were stopped.",
    "unsuspended": "{email} can sign in again.",
    "plan_changed": "{email} is on the {plan} plan now: its tiers and sessions at once hold from "
    "their next launch.",
}


def parse_grant_amount(text: str) -> int:
    """A grant typed in dollars ("10", "2.50", "$5") as micro-dollars; refuses anything else."""
    cleaned = text.strip().removeprefix("$").strip()
    if not cleaned:
        raise ValidationFailed("type an amount in dollars, like 10 or 2.50")
    found = _AMOUNT.fullmatch(cleaned)
    if not found:
        raise ValidationFailed(f"{text.strip()!r} is not an amount in dollars, like 10 or 2.50")
    decimals = found.group(2) or found.group(3) or ""
    if len(decimals) > 6:
        raise ValidationFailed("an amount has at most 6 decimals (one micro-dollar)")
    if len(found.group(1) or "") > 9:
        raise ValidationFailed(f"a single grant may be at most ${MAX_GRANT_USD:,}")
    micros = usd_to_micros(cleaned)
    if micros <= 0:
        raise ValidationFailed("a grant must be more than $0")
    if micros > MAX_GRANT_USD * 1_000_000:
        raise ValidationFailed(f"a single grant may be at most ${MAX_GRANT_USD:,}")
    return micros


def known_id(value: str, what: str) -> str:
    """An id as we make them; anything else is as unknown as a missing one."""
    if not ID_PATTERN.fullmatch(value):
        raise NotFound(f"{what} not found")
    return value


async def _provider_health(state: AppState) -> list[dict[str, Any]]:
    plugins = list(state.providers.values())
    limit = state.settings.provider_timeout_seconds
    checks = await asyncio.gather(
        *(asyncio.wait_for(plugin.health(), limit) for plugin in plugins), return_exceptions=True
    )
    now = state.clock.now()
    out = []
    for plugin, checked in zip(plugins, checks, strict=True):
        status = state.orchestrator.status[plugin.name]
        detail: str | None
        if isinstance(checked, BaseException):
            healthy, detail = False, f"the health check failed: {type(checked).__name__}"
        else:
            healthy, detail = checked.healthy, checked.detail
        out.append(
            {
                "name": plugin.name,
                "label": plugin.label,
                "healthy": healthy,
                "detail": detail,
                "breaker": status.state(now).value,
                "disabled_reason": status.disabled_reason,
                "last_error": status.last_error,
                "offer_count": status.offer_count,
            }
        )
    return out


def _start_of_day(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(), tzinfo=UTC)


def _money(row: reports.Revenue) -> dict[str, Any]:
    return {
        "paid_minutes": row.paid_minutes,
        "free_minutes": row.free_minutes,
        "revenue": reports.usd_cents(row.revenue_micros),
        "plans": reports.usd_cents(row.plan_micros),
        "upstream": reports.usd_cents(row.upstream_micros),
        "margin": reports.usd_cents(row.margin_micros),
        "loss": row.margin_micros < 0,
    }


@router.get("/admin", response_class=HTMLResponse)
async def overview(request: Request, state: StateDep, user: Operator) -> Response:
    """Providers with their health (and any the reconciler cannot list), live sessions by
    status, launches waiting for a GPU, today's money."""
    providers = await _provider_health(state)
    labels = {p["name"]: p["label"] for p in providers}
    now = state.clock.now()
    async with state.db.read() as tx:
        blind = await provider_listings.blind_providers(tx, list(labels))
        counts = await reports.live_session_counts(tx)
        queued = await launch_queue.waiting_summary(tx, now=now)
        stops = await reports.stops_by_reason(
            tx,
            [EndReason.BUDGET.value],
            since=_start_of_day(now),
            until=_start_of_day(now) + timedelta(days=1),
        )
        idle_today = await reports.idle_stops(tx, since=_start_of_day(now))
        idle_ever = await reports.idle_stops(tx)
        today = reports.total(
            await reports.daily_revenue(
                tx, since=_start_of_day(now), until=_start_of_day(now) + timedelta(days=1)
            )
        )
    return render(
        request,
        "admin/overview.html",
        user=user,
        providers=providers,
        blind=[
            {
                "name": row.provider,
                "label": labels[row.provider],
                "rounds": row.failed_rounds,
                "since": row.failing_since,
                "for_seconds": (now - row.failing_since).total_seconds()
                if row.failing_since
                else None,
                "last_error": row.last_error,
                "last_listed_at": row.last_listed_at,
            }
            for row in blind
        ],
        counts=counts,
        live_total=sum(counts.values()),
        queued=queued,
        idle_today=idle_today,
        idle_ever=idle_ever,
        today=_money(today),
        stops=stops,
    )


@router.get("/admin/sessions", response_class=HTMLResponse)
async def all_sessions(
    request: Request, state: StateDep, user: Operator, paging: PagingDep
) -> Response:
    """Every session, newest first, with whose it is and where it runs."""
    async with state.db.read() as tx:
        rows, total = await sessions.list_sessions(
            tx, user_id=None, limit=paging.limit, offset=paging.offset
        )
        emails = await reports.emails_of(tx, [s.user_id for s in rows])
    now = state.clock.now()
    return render(
        request,
        "admin/sessions.html",
        user=user,
        sessions=[(session_out(s, now, for_admin=True), emails.get(s.user_id, "?")) for s in rows],
        total=total,
        paging=paging,
    )


@router.get("/admin/sessions/{session_id}", response_class=HTMLResponse)
async def session_detail(
    request: Request, state: StateDep, user: Operator, session_id: str
) -> Response:
    """One session: its owner, its launch attempts and every status change."""
    async with state.db.read() as tx:
        found = await sessions.get_session(tx, known_id(session_id, "session"), user_id=None)
        owner = await tx.get(User, found.user_id)
        attempts = list(
            await tx.scalars(
                select(LaunchAttempt)
                .where(LaunchAttempt.session_id == found.id)
                .order_by(LaunchAttempt.id)
            )
        )
        events = list(
            await tx.scalars(
                select(SessionEvent)
                .where(SessionEvent.session_id == found.id)
                .order_by(SessionEvent.id)
            )
        )
    upstream = found.upstream_micros_per_hour
    return render(
        request,
        "admin/session.html",
        user=user,
        s=session_out(found, state.clock.now(), for_admin=True),
        owner=owner,
        upstream_per_hour=usd(upstream) if upstream is not None else None,
        attempts=attempts,
        events=events,
    )


async def _users_page(
    request: Request,
    state: StateDep,
    user: User,
    *,
    q: str,
    limit: int,
    offset: int,
    status_code: int = 200,
    error: str | None = None,
    done: str | None = None,
) -> Response:
    async with state.db.read() as tx:
        rows, total = await reports.list_users(tx, email_contains=q, limit=limit, offset=offset)
    return render(
        request,
        "admin/users.html",
        user=user,
        status_code=status_code,
        rows=rows,
        total=total,
        q=q,
        limit=limit,
        offset=offset,
        error=error,
        done=done,
        max_grant=f"{MAX_GRANT_USD:,}",
        reasons=REASON_LABELS,
        max_note=MAX_NOTE,
        plans=list(PLANS),
    )


async def _refused(
    request: Request, state: AppState, operator: User, *, q: str, status: int, error: str
) -> Response:
    """The users page (its first page) again, saying why an action was refused."""
    return await _users_page(
        request, state, operator, q=q, limit=50, offset=0, status_code=status, error=error
    )


async def _user_named(tx: AsyncSession, user_id: str) -> User:
    """The user the path names, for an action on them; 404 when there is none."""
    target = await tx.get(User, known_id(user_id, "user"))
    if target is None:
        raise NotFound("user not found")
    return target


def clean(text: str) -> str:
    """Form text fit for the database: no NUL or other control characters."""
    return "".join(ch for ch in text if ch.isprintable()).strip()


@router.get("/admin/users", response_class=HTMLResponse)
async def users(
    request: Request,
    state: StateDep,
    user: Operator,
    paging: PagingDep,
    q: Annotated[str, Query(max_length=320)] = "",
    done: Annotated[str, Query(max_length=20)] = "",
    target: Annotated[str, Query(alias="user", max_length=64)] = "",
    amount: Annotated[int, Query(ge=0, le=10**15)] = 0,
) -> Response:
    """Users with their plan, balances and standing; search by email."""
    notice = None
    if done in _DONE and ID_PATTERN.fullmatch(target):
        async with state.db.read() as tx:
            who = await tx.get(User, target)
        if who is not None:
            notice = _DONE[done].format(email=who.email, amount=usd(amount), plan=who.plan)
    return await _users_page(
        request,
        state,
        user,
        q=clean(q),
        limit=paging.limit,
        offset=paging.offset,
        done=notice,
    )


def _back_to_users(q: str, done: str, target: User, amount: int = 0) -> RedirectResponse:
    query = {"done": done, "user": target.id} | ({"q": q} if q else {})
    if amount:
        query["amount"] = str(amount)
    return RedirectResponse(f"/admin/users?{urlencode(query)}", status_code=303)


@router.post("/admin/users/{user_id}/grant", dependencies=[CsrfChecked])
async def grant(
    request: Request,
    state: StateDep,
    operator: Operator,
    user_id: str,
    amount: Annotated[str, Form(max_length=50)] = "",
    memo: Annotated[str, Form(max_length=120)] = "",
    q: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    """Grant credit through the ledger, from the platform's grants account."""
    q = clean(q)
    try:
        micros = parse_grant_amount(amount)
        async with state.db.transaction() as tx:
            target = await _user_named(tx, user_id)
            note = clean(memo)
            # The ledger's memo holds 200 characters, "credit granted by " included.
            granted_by = f"{operator.email} ({note})" if note else operator.email
            await accounts.grant_credits(
                tx,
                target,
                micros,
                now=state.clock.now(),
                granted_by=granted_by[:180],
                actor=f"operator:{operator.id}",
            )
    except NotFound:
        raise
    except SizzleError as exc:
        return await _refused(
            request, state, operator, q=q, status=exc.status_code, error=exc.message
        )
    return _back_to_users(q, "granted", target, micros)


async def _set_active(
    request: Request,
    state: AppState,
    operator: User,
    user_id: str,
    *,
    active: bool,
    q: str,
    reason: SuspensionReason | None = None,
    note: str = "",
) -> Response:
    q = clean(q)
    try:
        async with state.db.transaction() as tx:
            target = await _user_named(tx, user_id)
            accounts.set_suspended(
                tx,
                target,
                suspended=not active,
                operator=operator,
                now=state.clock.now(),
                reason=reason,
                note=clean(note),
            )
    except (Conflict, ValidationFailed) as exc:
        return await _refused(
            request, state, operator, q=q, status=exc.status_code, error=exc.message
        )
    if not active:  # a suspended account stops paying for GPUs it can no longer reach
        await sessions.stop_sessions_of_user(
            state.db,
            state.providers,
            user_id=target.id,
            actor=f"operator:{operator.id}",
            end_reason=EndReason.ACCOUNT_SUSPENDED,
            now=state.clock.now(),
        )
    return _back_to_users(q, "unsuspended" if active else "suspended", target)


@router.post("/admin/users/{user_id}/plan", dependencies=[CsrfChecked])
async def change_plan(
    request: Request,
    state: StateDep,
    operator: Operator,
    user_id: str,
    plan: Annotated[str, Form(max_length=32)] = "",
    q: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    """Move an account to another plan, as its user asked (the plans page says to ask)."""
    q = clean(q)
    try:
        async with state.db.transaction() as tx:
            target = await _user_named(tx, user_id)
            accounts.change_plan(
                tx, target, plan, actor=f"operator:{operator.id}", now=state.clock.now()
            )
    except ValidationFailed as exc:
        return await _refused(
            request, state, operator, q=q, status=exc.status_code, error=exc.message
        )
    return _back_to_users(q, "plan_changed", target)


@router.post("/admin/users/{user_id}/suspend", dependencies=[CsrfChecked])
async def suspend(
    request: Request,
    state: StateDep,
    operator: Operator,
    user_id: str,
    q: Annotated[str, Form(max_length=320)] = "",
    reason: Annotated[str, Form(max_length=32)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Suspend an account for a reason the user is shown (and the operator's note): no
    sign-in, no API; its balances stay as they are."""
    if reason not in set(SuspensionReason):
        return await _refused(
            request,
            state,
            operator,
            q=clean(q),
            status=422,
            error="Choose why the account is suspended from the list: the user is shown it.",
        )
    why = SuspensionReason(reason)
    return await _set_active(
        request, state, operator, user_id, active=False, q=q, reason=why, note=note
    )


@router.post("/admin/users/{user_id}/unsuspend", dependencies=[CsrfChecked])
async def unsuspend(
    request: Request,
    state: StateDep,
    operator: Operator,
    user_id: str,
    q: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    """Let a suspended account sign in again."""
    return await _set_active(request, state, operator, user_id, active=True, q=q)


@router.get("/admin/revenue", response_class=HTMLResponse)
async def revenue(
    request: Request,
    state: StateDep,
    user: Operator,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> Response:
    """Revenue of session minutes and Sizzle Lab plans, upstream cost and margin per UTC day,
    and totals."""
    until = _start_of_day(state.clock.now()) + timedelta(days=1)
    since = until - timedelta(days=days)
    async with state.db.read() as tx:
        rows = await reports.daily_revenue(tx, since=since, until=until)
    return render(
        request,
        "admin/revenue.html",
        user=user,
        days=days,
        since=since.date(),
        until=(until - timedelta(days=1)).date(),
        rows=[(row.day, _money(row)) for row in reversed(rows)],
        totals=_money(reports.total(rows)),
        lab_name=LAB_NAME,
    )
