"""What anyone may see: the landing page, the legal pages, sign up, sign in, sign out."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sizzle.api.deps import StateDep, client_ip
from sizzle.api.mailing import mail_verification
from sizzle.db.models import User
from sizzle.domain.tiers import TIERS
from sizzle.errors import NotFound, SizzleError, ValidationFailed
from sizzle.legal import BY_SLUG, KINDS, library
from sizzle.services import accounts, audit, legal_acceptance
from sizzle.state import AppState
from sizzle.web.deps import CsrfChecked, MaybeUser, give_session_cookie
from sizzle.web.render import render
from sizzle.web.security import clear_session_cookie

router = APIRouter(include_in_schema=False)

NOT_ACCEPTED = (
    "Tick the box to accept the Terms of Service and the Acceptable Use Policy: an account "
    "needs them. The links above open each one."
)


def safe_next(target: str | None) -> str:
    """Only a path on this site, never an open redirect to somewhere else; "" for none (then
    the user's own start page, `start_page`)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return ""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return ""
    return target


def start_page(user: User) -> str:
    """Where a sign-in lands when it was not sent from a page: an operator's overview, or the
    user's sessions."""
    return "/admin" if user.is_admin else "/sessions"


async def tier_cards(state: AppState) -> list[dict[str, object]]:
    tiers = list(TIERS.values())
    offers = await asyncio.gather(
        *(state.orchestrator.offers_for(tier) for tier in tiers), return_exceptions=True
    )
    cards = []
    for tier, found in zip(tiers, offers, strict=True):
        count = tier.min_gpus if tier.min_gpus == tier.max_gpus else f"{tier.min_gpus}+"
        cards.append(
            {
                "name": tier.name,
                "label": tier.name.capitalize(),
                "available": isinstance(found, list) and bool(found),
                "price_per_minute": f"{tier.price_micros_per_minute / 1_000_000:.2f}",
                "good_for": tier.good_for,
                "gpus": f"{count} × {' or '.join(tier.gpu_types)}",
                "vram": tier.min_vram_gb,
            }
        )
    return cards


def _signed_in(request: Request, state: AppState, user: User, target: str) -> Response:
    response = RedirectResponse(safe_next(target) or start_page(user), status_code=303)
    give_session_cookie(request, response, state, user.id)
    return response


@router.get("/", response_class=HTMLResponse)
async def landing(
    request: Request, state: StateDep, user: MaybeUser, deleted: bool = False
) -> Response:
    return render(
        request,
        "landing.html",
        user=user,
        deleted=deleted and user is None,
        tiers=await tier_cards(state),
        free_minutes=state.settings.free_minutes,
    )


@router.get("/legal/{slug}", response_class=HTMLResponse)
async def legal_page(request: Request, state: StateDep, user: MaybeUser, slug: str) -> Response:
    """A legal document, from its Markdown (the operator's, else the default), and its version."""
    if slug not in BY_SLUG:
        raise NotFound(
            "There is no such page. The legal pages are linked at the foot of every page."
        )
    document = library(state.settings.legal_dir).document(slug)
    return render(
        request,
        "legal.html",
        user=user,
        document=document,
        kinds=KINDS,
        support_email=state.settings.support_email,
    )


def _signup_form(
    request: Request, state: AppState, *, status_code: int = 200, **context: object
) -> Response:
    return render(
        request,
        "signup.html",
        user=None,
        status_code=status_code,
        free_minutes=state.settings.free_minutes,
        max_name=accounts.MAX_NAME_LENGTH,
        **context,
    )


@router.get("/signup", response_class=HTMLResponse)
async def signup_page(request: Request, state: StateDep, user: MaybeUser) -> Response:
    if user:
        return RedirectResponse("/sessions", status_code=303)
    return _signup_form(request, state)


@router.post("/signup", dependencies=[CsrfChecked])
async def signup(
    request: Request,
    state: StateDep,
    background: BackgroundTasks,
    email: Annotated[str, Form(max_length=10_000)],
    password: Annotated[str, Form(max_length=10_000)],
    name: Annotated[str, Form(max_length=10_000)] = "",
    accept_terms: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """A new account, once the legal documents are accepted; the same checks as the API's
    (the address by the same validator). Free minutes come when the address is confirmed."""
    try:
        address = accounts.normal_email(email)
        if accept_terms != "yes":
            raise ValidationFailed(NOT_ACCEPTED, code="terms_not_accepted")
        await state.rate_limiter.sign_up_attempt(ip=client_ip(request))
        async with state.db.transaction() as tx:
            created = await accounts.create_user(
                tx,
                email=address,
                password=password,
                name=name.strip() or None,
                now=state.clock.now(),
                free_minutes=0,
                terms_version=library(state.settings.legal_dir).acceptance_version(),
            )
    except SizzleError as exc:
        return _signup_form(
            request,
            state,
            status_code=exc.status_code,
            error=exc.message,
            email=email[:320],
            name=name[: accounts.MAX_NAME_LENGTH],
            accepted=accept_terms == "yes",
        )
    await mail_verification(state, background, created.id)
    return _signed_in(request, state, created, "/welcome")


@router.get("/welcome", response_class=HTMLResponse)
async def welcome(request: Request, state: StateDep, user: MaybeUser) -> Response:
    """After sign-up: confirm the address (for the free minutes), then launch."""
    if user is None:
        return RedirectResponse("/signin?next=/welcome", status_code=303)
    return render(
        request, "access/welcome.html", user=user, free_minutes=state.settings.free_minutes
    )


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(
    request: Request,
    state: StateDep,
    user: MaybeUser,
    next: str | None = None,
    reset: bool = False,
) -> Response:
    if user:
        return RedirectResponse(safe_next(next) or start_page(user), status_code=303)
    return _signin_form(request, state, next=next, reset=reset)


def _signin_form(
    request: Request,
    state: AppState,
    *,
    next: str | None,
    error: SizzleError | None = None,
    email: str = "",
    reset: bool = False,
) -> Response:
    return render(
        request,
        "signin.html",
        user=None,
        status_code=error.status_code if error else 200,
        error=error.message if error else None,
        error_code=error.code if error else None,
        email=email[:320],
        next=safe_next(next),
        free_minutes=state.settings.free_minutes,
        reset=reset,
    )


@router.post("/signin", dependencies=[CsrfChecked])
async def signin(
    request: Request,
    state: StateDep,
    email: Annotated[str, Form(max_length=10_000)],
    password: Annotated[str, Form(max_length=10_000)],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Sign in; when the legal documents changed since the user accepted them, they are asked
    to accept the new ones before the browser is signed in."""
    try:
        address = accounts.normal_email(email)
        async with state.rate_limiter.password_attempt(email=address, ip=client_ip(request)):
            found = await accounts.sign_in(
                state.db, email=address, password=password, now=state.clock.now(), via="web"
            )
    except SizzleError as exc:
        return _signin_form(request, state, next=next, error=exc, email=email)
    current = library(state.settings.legal_dir).acceptance_version()
    if found.terms_version != current:
        token = legal_acceptance.pending_token(
            found, version=current, secret=state.settings.resolved_secret_key, now=state.clock.now()
        )
        return _accept_page(request, state, token, next)
    return _signed_in(request, state, found, next)


def _accept_page(
    request: Request,
    state: AppState,
    token: str,
    next: str,
    *,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    return render(
        request,
        "access/accept_terms.html",
        user=None,
        status_code=status_code,
        token=token,
        next=safe_next(next),
        documents=library(state.settings.legal_dir).documents(),
        error=error,
    )


@router.post("/signin/accept-terms", dependencies=[CsrfChecked])
async def accept_terms(
    request: Request,
    state: StateDep,
    token: Annotated[str, Form(max_length=2000)],
    next: Annotated[str, Form(max_length=2000)] = "",
    accept_terms: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """The second half of a sign-in whose user had not accepted the current legal documents:
    the password was checked a moment ago (the signed token says so); the box accepts them."""
    try:
        if accept_terms != "yes":
            raise ValidationFailed(
                "Tick the box to accept the new versions: Sizzle cannot be used without them. "
                "If you do not accept them, close this page; you stay signed out.",
                code="terms_not_accepted",
            )
        user_id = await legal_acceptance.accept_pending(
            state.db,
            token,
            version=library(state.settings.legal_dir).acceptance_version(),
            secret=state.settings.resolved_secret_key,
            now=state.clock.now(),
        )
    except ValidationFailed as exc:
        return _accept_page(request, state, token, next, status_code=422, error=exc.message)
    except SizzleError as exc:
        return _signin_form(request, state, next=next, error=exc)
    async with state.db.read() as tx:
        accepted = await tx.get(User, user_id)
    if accepted is None:  # deleted in the moment since: as if the sign-in had failed
        return RedirectResponse("/signin", status_code=303)
    return _signed_in(request, state, accepted, next)


@router.post("/signout", dependencies=[CsrfChecked])
async def signout(request: Request, state: StateDep, user: MaybeUser) -> Response:
    if user is not None:
        await audit.record_alone(
            state.db,
            "auth.sign_out",
            actor=f"user:{user.id}",
            now=state.clock.now(),
            user_id=user.id,
            detail="web",
        )
    response = RedirectResponse("/", status_code=303)
    clear_session_cookie(request, response)
    return response
