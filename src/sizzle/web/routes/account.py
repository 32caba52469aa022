"""Account pages: billing (balance, free minutes, transactions) and profile (with SSH keys)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from sizzle.api.deps import IdPath, Paging, PagingDep, StateDep, client_ip
from sizzle.api.routers.account import export_document
from sizzle.api.routers.billing import receipt_download, return_urls, statement_download
from sizzle.api.views import transaction_out
from sizzle.db.models import Purchase, User
from sizzle.domain.budget import parse_budget
from sizzle.domain.lab import LAB_NAME
from sizzle.domain.limits import LimitError
from sizzle.domain.money import usd_to_micros
from sizzle.domain.tiers import PLANS, TIERS
from sizzle.errors import SizzleError, ValidationFailed
from sizzle.services import account_data, accounts, budget, ledger, ssh_keys, statements
from sizzle.services.notification_preferences import (
    MONEY_CRITICAL_WHY,
    STILL_RUNNING_CHOICES,
    read_preferences,
    still_running_text,
)
from sizzle.state import AppState
from sizzle.web.deps import CsrfChecked, SignedIn, give_session_cookie
from sizzle.web.render import render
from sizzle.web.security import clear_session_cookie

router = APIRouter(include_in_schema=False)

# What each kind of ledger entry is, in words a customer reads.
ENTRY_LABELS = {
    "credit_grant": "Credit added",
    "free_minutes_grant": "Free minutes granted",
    "session_minute": "GPU time",
    "session_minute_refund": "Refund",
    "purchase": "Credit bought",
    "purchase_bonus": "Package bonus",
    "refund": "Refund to card",
    "refund_bonus": "Package bonus taken back",
    "refund_restored": "Refund failed: credit restored",
    "included_minutes_grant": "Sizzle Lab minutes for the month",
    "included_minutes_expired": "Unused Sizzle Lab minutes expired",
    "lab_payment": "Sizzle Lab, paid by card",
}


@router.get("/billing", response_class=HTMLResponse)
async def billing(request: Request, state: StateDep, user: SignedIn, paging: PagingDep) -> Response:
    """My credit, free minutes and every movement of them, newest first."""
    return await _billing_page(request, state, user, paging)


async def _billing_page(
    request: Request,
    state: AppState,
    user: User,
    paging: Paging,
    *,
    top_up_error: str | None = None,
    lab_error: str | None = None,
    status_code: int = 200,
) -> Response:
    async with state.db.read() as tx:
        funds = await ledger.balances(tx, user.id)
        entries, total = await ledger.list_entries(
            tx, user.id, limit=paging.limit, offset=paging.offset
        )
        mine = await ledger.user_accounts(tx, user.id)
        month = await budget.month_state(tx, user.id, now=state.clock.now())
        purchases = list(
            await tx.scalars(
                select(Purchase)
                .where(Purchase.user_id == user.id, Purchase.status == "paid")
                .order_by(Purchase.paid_at.desc())
                .limit(20)
            )
        )
    plan = PLANS.get(user.plan)
    allowed = [t for t in TIERS.values() if plan is None or t.name in plan.allowed_tiers]
    cheapest = min(allowed or TIERS.values(), key=lambda tier: tier.price_micros_per_minute)
    lab = state.settings.lab
    affordable = funds.minutes_at(
        cheapest.price_micros_per_minute, lab_covered=lab.covers(cheapest.name)
    )
    return render(
        request,
        "account/billing.html",
        user=user,
        balances=funds,
        budget=month,
        cheapest=cheapest,
        affordable_minutes=affordable,
        transactions=[transaction_out(e, user_accounts=mine) for e in entries],
        labels=ENTRY_LABELS,
        total=total,
        paging=paging,
        payments_enabled=state.payments.configured,
        packages=list(state.payments.packages.values()),
        purchases=purchases,
        months=_recent_months(state.clock.now(), user.created_at),
        top_up=await state.payments.top_ups.get(user.id),
        top_up_error=top_up_error,
        lab=lab,
        lab_name=LAB_NAME,
        subscription=await state.payments.lab.current(user.id),
        lab_error=lab_error,
        status_code=status_code,
    )


@router.post("/billing/auto-top-up", dependencies=[CsrfChecked])
async def auto_top_up(
    request: Request,
    state: StateDep,
    user: SignedIn,
    paging: PagingDep,
    threshold: Annotated[str, Form(max_length=20)],
    package: Annotated[str, Form(max_length=32)],
    enabled: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Save the auto-top-up settings; a refusal is shown on the billing page."""
    try:
        try:
            micros = usd_to_micros(threshold.strip().lstrip("$"))
        except (ValueError, ArithmeticError):
            raise ValidationFailed("the threshold is dollars, like 5 or 2.50") from None
        await state.payments.top_ups.configure(
            user, enabled=enabled == "on", threshold_micros=micros, package_id=package
        )
    except SizzleError as exc:
        return await _billing_page(
            request, state, user, paging, top_up_error=exc.message, status_code=exc.status_code
        )
    return RedirectResponse("/billing#auto-top-up", status_code=303)


def _recent_months(now: datetime, since: datetime, *, most: int = 12) -> list[str]:
    """YYYY-MM of this month back to the month the account was made, at most `most`."""
    months: list[str] = []
    year, month = now.year, now.month
    while len(months) < most and (year, month) >= (since.year, since.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


@router.get("/billing/statements/{month}.{kind}")
async def statement_file(
    state: StateDep,
    user: SignedIn,
    month: Annotated[str, Path(pattern=r"^\d{4}-\d{2}$")],
    kind: Annotated[str, Path(pattern="^(csv|pdf)$")],
) -> Response:
    """A month's statement, to download."""
    async with state.db.read() as tx:
        found = await statements.monthly_statement(tx, user, month)
    return statement_download(found, kind)


@router.get("/billing/receipts/{purchase_id}.pdf")
async def receipt_file(state: StateDep, user: SignedIn, purchase_id: IdPath) -> Response:
    return await receipt_download(state, purchase_id, user_id=user.id)


@router.post("/billing/checkout", dependencies=[CsrfChecked])
async def buy(
    state: StateDep,
    user: SignedIn,
    package: Annotated[str, Form(max_length=32)],
) -> Response:
    """To Stripe's checkout page for the package; Stripe sends the browser back to the return
    page. Without Stripe set up, the error page says so."""
    success, cancel = return_urls(
        state, success="/billing/return?purchase={PURCHASE_ID}", cancel="/billing"
    )
    started = await state.payments.start_checkout(
        user, package, success_url=success, cancel_url=cancel
    )
    return RedirectResponse(started.url, status_code=303)


@router.post("/billing/lab", dependencies=[CsrfChecked])
async def subscribe(request: Request, state: StateDep, user: SignedIn) -> Response:
    """To Stripe's checkout page for Sizzle Lab; back to the billing page after."""
    success, cancel = return_urls(state, success="/billing?lab=welcome", cancel="/billing")
    try:
        started = await state.payments.lab.start_checkout(
            user, success_url=success, cancel_url=cancel
        )
    except SizzleError as exc:
        return await _billing_page(
            request, state, user, Paging(), lab_error=exc.message, status_code=exc.status_code
        )
    return RedirectResponse(started.url, status_code=303)


@router.post("/billing/lab/{action}", dependencies=[CsrfChecked])
async def change_lab(
    request: Request,
    state: StateDep,
    user: SignedIn,
    action: Annotated[str, Path(pattern="^(cancel|resume)$")],
) -> Response:
    """Cancel Sizzle Lab at the end of the paid month, or take that back."""
    try:
        await state.payments.lab.set_cancel_at_period_end(user.id, cancel=action == "cancel")
    except SizzleError as exc:
        return await _billing_page(
            request, state, user, Paging(), lab_error=exc.message, status_code=exc.status_code
        )
    return RedirectResponse("/billing#lab", status_code=303)


@router.get("/billing/return", response_class=HTMLResponse)
async def bought(
    request: Request,
    state: StateDep,
    user: SignedIn,
    purchase: Annotated[str, Query(max_length=64)],
) -> Response:
    """Back from Stripe: paid (the credit is there), or still being confirmed."""
    found = await state.payments.refresh(purchase, user_id=user.id)
    return render(request, "account/bought.html", user=user, purchase=found)


async def profile_page(
    request: Request,
    state: AppState,
    user: User,
    *,
    status_code: int = 200,
    error: str | None = None,
    changed: bool = False,
    delete_error: str | None = None,
    verification_sent: bool = False,
    ssh_error: str | None = None,
    ssh_form: dict[str, str] | None = None,
    notification_error: str | None = None,
    notifications_saved: bool = False,
    budget_error: str | None = None,
    budget_typed: str | None = None,
    budget_saved: bool = False,
) -> HTMLResponse:
    """The account page, with what a form sent back (an error, the SSH key typed in)."""
    async with state.db.read() as tx:
        keys = await ssh_keys.list_keys(tx, user.id)
        account = await tx.get(User, user.id)
        preferences = await read_preferences(tx, account or user)
        month = await budget.month_state(tx, user.id, now=state.clock.now())
    return render(
        request,
        "account/profile.html",
        user=user,
        status_code=status_code,
        plan=PLANS.get(user.plan),
        min_password_length=accounts.MIN_PASSWORD_LENGTH,
        error=error,
        changed=changed,
        delete_error=delete_error,
        verification_sent=verification_sent,
        ssh_keys=keys,
        max_ssh_keys=ssh_keys.MAX_KEYS_PER_USER,
        ssh_error=ssh_error,
        ssh_form=ssh_form or {},
        preferences=preferences,
        reminder_choices=[(hours, still_running_text(hours)) for hours in STILL_RUNNING_CHOICES],
        money_critical_why=MONEY_CRITICAL_WHY,
        notification_error=notification_error,
        notifications_saved=notifications_saved,
        budget=month,
        lab_name=LAB_NAME,
        budget_error=budget_error,
        budget_typed=budget_typed,
        budget_saved=budget_saved,
    )


@router.get("/account", response_class=HTMLResponse)
async def profile(
    request: Request,
    state: StateDep,
    user: SignedIn,
    verification: Annotated[str, Query(max_length=10)] = "",
    notifications: Annotated[str, Query(max_length=10)] = "",
) -> Response:
    """Who I am here; what I am mailed; my SSH keys; change my password; my data; leaving."""
    return await profile_page(
        request,
        state,
        user,
        verification_sent=verification == "sent",
        notifications_saved=notifications == "saved",
    )


@router.post("/account/budget", dependencies=[CsrfChecked])
async def save_budget(
    request: Request,
    state: StateDep,
    user: SignedIn,
    monthly_budget: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Set the monthly budget as typed ("25", "2,50", "$2.50"); empty removes it."""
    try:
        micros = parse_budget(monthly_budget)
    except LimitError as exc:
        return await profile_page(
            request,
            state,
            user,
            status_code=422,
            budget_error=exc.message,
            budget_typed=monthly_budget,
        )
    async with state.db.transaction() as tx:
        await budget.set_budget(tx, user.id, micros, now=state.clock.now())
    return await profile_page(request, state, user, budget_saved=True)


@router.get("/account/export.json")
async def export(state: StateDep, user: SignedIn) -> Response:
    """Everything Sizzle holds about me, as a JSON download."""
    return await export_document(state, user.id)


@router.post("/account/delete", dependencies=[CsrfChecked])
async def delete(
    request: Request,
    state: StateDep,
    user: SignedIn,
    password: Annotated[str, Form(max_length=1000)],
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Delete the account (password and a ticked box): the browser is signed out after."""
    try:
        if confirm != "yes":
            raise ValidationFailed(
                "tick the box to confirm that you want to delete the account", code="unconfirmed"
            )
        async with state.rate_limiter.password_attempt(email=user.email, ip=client_ip(request)):
            await account_data.delete_account(
                state.db,
                state.providers,
                user_id=user.id,
                password=password,
                now=state.clock.now(),
                secret=state.settings.resolved_secret_key,
            )
    except SizzleError as exc:
        return await profile_page(
            request, state, user, status_code=exc.status_code, delete_error=exc.message
        )
    response = RedirectResponse("/?deleted=1", status_code=303)
    clear_session_cookie(request, response)
    return response


@router.post("/account/password", dependencies=[CsrfChecked])
async def change_password(
    request: Request,
    state: StateDep,
    user: SignedIn,
    current_password: Annotated[str, Form(max_length=1000)],
    new_password: Annotated[str, Form(max_length=1000)],
    repeat_password: Annotated[str, Form(max_length=1000)],
) -> Response:
    try:
        if new_password != repeat_password:
            raise ValidationFailed(
                "the two new passwords are not the same", code="passwords_differ"
            )
        async with (
            state.rate_limiter.password_attempt(email=user.email, ip=client_ip(request)),
            state.db.transaction() as tx,
        ):
            account = await accounts.get_active_user(tx, user.id)
            await accounts.change_password(
                tx, account, current=current_password, new=new_password, now=state.clock.now()
            )
    except SizzleError as exc:
        return await profile_page(
            request, state, user, status_code=exc.status_code, error=exc.message
        )
    # Every other sign-in of this account has just ended; this browser gets a new one.
    response = await profile_page(request, state, user, changed=True)
    give_session_cookie(request, response, state, user.id)
    return response
