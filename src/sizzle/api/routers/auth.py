"""Sign-up, sign-in and who am I."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, status

from sizzle.api.deps import AnyKeyUser, StateDep, TxDep, client_ip
from sizzle.api.schemas import LoginIn, RegisterIn, RegisterOut, TokenOut, UserOut
from sizzle.api.views import user_out
from sizzle.security import create_access_token
from sizzle.services import accounts
from sizzle.state import AppState

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def _token(state: AppState, user_id: str) -> TokenOut:
    lifetime = timedelta(minutes=state.settings.access_token_minutes)
    token = create_access_token(
        user_id,
        secret=state.settings.resolved_secret_key,
        now=state.clock.now(),
        lifetime=lifetime,
    )
    return TokenOut(access_token=token, expires_in=int(lifetime.total_seconds()))


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=RegisterOut)
async def register(body: RegisterIn, state: StateDep, request: Request, tx: TxDep) -> RegisterOut:
    await state.rate_limiter.sign_up_attempt(ip=client_ip(request))
    user = await accounts.create_user(
        tx,
        email=body.email,
        password=body.password,
        name=body.name,
        now=state.clock.now(),
        free_minutes=state.settings.free_minutes,
    )
    token = _token(state, user.id)
    return RegisterOut(**token.model_dump(), user=user_out(await accounts.summarize(tx, user)))


@router.post("/login", response_model=TokenOut)
async def login(body: LoginIn, state: StateDep, request: Request, tx: TxDep) -> TokenOut:
    """A sign-in token. Attempts are limited per account and per address (429 beyond)."""
    await state.rate_limiter.sign_in_attempt(email=body.email, ip=client_ip(request))
    user = await accounts.authenticate(tx, email=body.email, password=body.password)
    return _token(state, user.id)


@router.get("/me", response_model=UserOut)
async def me(user: AnyKeyUser, tx: TxDep) -> UserOut:
    return user_out(await accounts.summarize(tx, user))
