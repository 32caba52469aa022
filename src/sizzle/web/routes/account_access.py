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
from sizzle.errors import SizzleError, ValidationFailed
from sizzle.services import accounts
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


@router.get("/reset-password", response_class=HTMLResponse)
async def reset_page(request: Request, state: StateDep, token: Token = "") -> Response:
    return render(
        request,
        "access/reset.html",
        user=None,
        token=token,
        min_password_length=accounts.MIN_PASSWORD_LENGTH,
    )


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
            raise ValidationFailed("the two passwords are not the same", code="passwords_differ")
        await state.account_links.reset_password(token, new_password)
    except SizzleError as exc:
        return render(
            request,
            "access/reset.html",
            user=None,
            status_code=exc.status_code,
            error=exc.message,
            error_code=exc.code,
            token=token,
            min_password_length=accounts.MIN_PASSWORD_LENGTH,
        )
    return RedirectResponse("/signin?reset=1", status_code=303)


@router.get("/verify-email", response_class=HTMLResponse)
async def verify_page(request: Request, user: MaybeUser, token: Token = "") -> Response:
    return render(request, "access/verify.html", user=user, token=token)


@router.post("/verify-email", dependencies=[CsrfChecked])
async def verify(request: Request, state: StateDep, user: MaybeUser, token: TokenField) -> Response:
    try:
        await state.account_links.verify_email(token)
    except SizzleError as exc:
        return render(
            request,
            "access/verify.html",
            user=user,
            status_code=exc.status_code,
            error=exc.message,
            token=token,
        )
    return render(request, "access/verify.html", user=user, verified=True)


@router.post("/account/verify-email", dependencies=[CsrfChecked])
async def resend(
    request: Request, state: StateDep, user: SignedIn, background: BackgroundTasks
) -> Response:
    """Mail the confirmation link again, from the account page."""
    await state.rate_limiter.account_mail(email=user.email, ip=client_ip(request))
    await mail_verification(state, background, user.id)
    return RedirectResponse("/account?verification=sent", status_code=303)
