"""Getting back in, and proving an address: forgotten password, reset and email links.

The links come by mail (`services/account_links.py`). Following one only shows a page: the
change is made by the button on it, so a mail scanner that opens links changes nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sizzle.api.deps import StateDep, client_ip
from sizzle.api.mailing import mail_password_reset, mail_verification
from sizzle.db.models import User
from sizzle.errors import SizzleError, ValidationFailed
from sizzle.services import accounts, ledger
from sizzle.state import AppState
from sizzle.web.deps import CsrfChecked, MaybeUser, SignedIn
from sizzle.web.render import render

router = APIRouter(include_in_schema=False)

Token = Annotated[str, Query(max_length=2000)]
TokenField = Annotated[str, Form(max_length=2000)]


@router.get("/forgot-password", response_class=HTMLResponse)
async def forgot_page(request: Request, user: MaybeUser) -> Response:
    return render(request, "access/forgot.html", user=user)


@router.post("/forgot-password", dependencies=[CsrfChecked])
async def forgot(
    request: Request,
    state: StateDep,
    user: MaybeUser,
    background: BackgroundTasks,
    email: Annotated[str, Form(max_length=320)],
) -> Response:
    """Mail a reset link; the page says the same whether the address has an account or not.
    Limited on its own (per address and per account): wrong passwords never block it."""
    try:
        address = accounts.normal_email(email)
        await state.rate_limiter.account_mail(email=address, ip=client_ip(request))
    except SizzleError as exc:
        return render(
            request,
            "access/forgot.html",
            user=user,
            status_code=exc.status_code,
            error=exc.message,
            email=email,
        )
    await mail_password_reset(state, background, email)
    return render(
        request,
        "access/forgot.html",
        user=user,
        sent_to=email.strip(),
        reset_minutes=state.settings.password_reset_minutes,
    )


def _reset_form(request: Request, token: str, error: SizzleError | None = None) -> Response:
    """The new-password page; with `error`, it says what went wrong (and, for a link that can
    no longer work, offers a new one instead of the form)."""
    return render(
        request,
        "access/reset.html",
        user=None,
        status_code=error.status_code if error else 200,
        error=error.message if error else None,
        error_code=error.code if error else None,
        token=token,
        min_password_length=accounts.MIN_PASSWORD_LENGTH,
    )


@router.get("/reset-password", response_class=HTMLResponse)
async def reset_page(request: Request, state: StateDep, token: Token = "") -> Response:
    """The new-password form, only for a link that still works: a used, expired or broken
    link says so, with a way to ask for a new one, before anyone types a password."""
    if token:
        try:
            await state.account_links.check_reset_link(token)
        except SizzleError as exc:
            return _reset_form(request, token, exc)
    return _reset_form(request, token)


@router.post("/reset-password", dependencies=[CsrfChecked])
async def reset(
    request: Request,
    state: StateDep,
    token: TokenField,
    new_password: Annotated[str, Form(max_length=1000)],
    repeat_password: Annotated[str, Form(max_length=1000)],
) -> Response:
    try:
        await state.rate_limiter.password_reset(ip=client_ip(request))
        if new_password != repeat_password:
            raise ValidationFailed(
                "The two passwords are not the same. Type the new password twice, alike.",
                code="passwords_differ",
            )
        await state.account_links.reset_password(token, new_password)
    except SizzleError as exc:
        return _reset_form(request, token, exc)
    return RedirectResponse("/signin?reset=1", status_code=303)


@router.get("/verify-email", response_class=HTMLResponse)
async def verify_page(
    request: Request, state: StateDep, user: MaybeUser, token: Token = ""
) -> Response:
    """The button that confirms the address, only for a link that can still do it (opening the
    link changes nothing: mail scanners open links)."""
    if token:
        try:
            if await state.account_links.check_verification_link(token):
                return render(request, "access/verify.html", user=user, verified=True)
        except SizzleError as exc:
            return _link_refused(request, user, exc)
    return render(request, "access/verify.html", user=user, token=token)


def _link_refused(request: Request, user: User | None, error: SizzleError) -> Response:
    """A confirmation link that cannot work: why, and the way to a new one (no button)."""
    return render(
        request,
        "access/verify.html",
        user=user,
        status_code=error.status_code,
        error=error.message,
        token="",
    )


@router.post("/verify-email", dependencies=[CsrfChecked])
async def verify(request: Request, state: StateDep, user: MaybeUser, token: TokenField) -> Response:
    try:
        confirmed = await state.account_links.verify_email(token)
    except SizzleError as exc:
        return _link_refused(request, user, exc)
    return render(
        request,
        "access/verify.html",
        user=user,
        verified=True,
        free_minutes_left=await _free_minutes_of(state, confirmed.id) if user else None,
    )


async def _free_minutes_of(state: AppState, user_id: str) -> int:
    async with state.db.read() as tx:
        return (await ledger.balances(tx, user_id)).free_minutes


@router.post("/account/verify-email", dependencies=[CsrfChecked])
async def resend(
    request: Request, state: StateDep, user: SignedIn, background: BackgroundTasks
) -> Response:
    """Mail the confirmation link again, from the account page."""
    await state.rate_limiter.account_mail(email=user.email, ip=client_ip(request))
    await mail_verification(state, background, user.id)
    return RedirectResponse("/account?verification=sent", status_code=303)
