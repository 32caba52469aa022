"""What anyone may see: the landing page, sign up, sign in, sign out."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sizzle.api.deps import StateDep, client_ip
from sizzle.api.mailing import mail_verification
from sizzle.domain.tiers import TIERS
from sizzle.errors import SizzleError
from sizzle.services import accounts, audit
from sizzle.state import AppState
from sizzle.web.deps import CsrfChecked, MaybeUser, give_session_cookie
from sizzle.web.render import render
from sizzle.web.security import clear_session_cookie

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to somewhere else."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/sessions"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return "/sessions"
    return target


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


def _signed_in(request: Request, state: AppState, user_id: str, target: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    give_session_cookie(request, response, state, user_id)
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


@router.get("/signup", response_class=HTMLResponse)
async def signup_page(request: Request, state: StateDep, user: MaybeUser) -> Response:
    if user:
        return RedirectResponse("/sessions", status_code=303)
    return render(request, "signup.html", user=None, free_minutes=state.settings.free_minutes)


@router.post("/signup", dependencies=[CsrfChecked])
async def signup(
    request: Request,
    state: StateDep,
    background: BackgroundTasks,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1000)],
    name: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    try:
        await state.rate_limiter.sign_up_attempt(ip=client_ip(request))
        async with state.db.transaction() as tx:
            created = await accounts.create_user(
                tx,
                email=email,
                password=password,
                name=name.strip() or None,
                now=state.clock.now(),
                free_minutes=state.settings.free_minutes,
            )
    except SizzleError as exc:
        return render(
            request,
            "signup.html",
            user=None,
            status_code=exc.status_code,
            error=exc.message,
            email=email,
            name=name,
            free_minutes=state.settings.free_minutes,
        )
    await mail_verification(state, background, created.id)
    return _signed_in(request, state, created.id, "/launch")


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(
    request: Request,
    state: StateDep,
    user: MaybeUser,
    next: str | None = None,
    reset: bool = False,
) -> Response:
    if user:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(
        request,
        "signin.html",
        user=None,
        next=safe_next(next),
        free_minutes=state.settings.free_minutes,
        reset=reset,
    )


@router.post("/signin", dependencies=[CsrfChecked])
async def signin(
    request: Request,
    state: StateDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form(max_length=2000)] = "/sessions",
) -> Response:
    try:
        address = accounts.normal_email(email)
        async with state.rate_limiter.password_attempt(email=address, ip=client_ip(request)):
            found = await accounts.sign_in(
                state.db, email=address, password=password, now=state.clock.now(), via="web"
            )
    except SizzleError as exc:
        return render(
            request,
            "signin.html",
            user=None,
            status_code=exc.status_code,
            error=exc.message,
            email=email,
            next=safe_next(next),
            free_minutes=state.settings.free_minutes,
        )
    return _signed_in(request, state, found.id, safe_next(next))


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
