"""Sign-up, sign-in and who am I."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, BackgroundTasks, Request, status

from sizzle.api.deps import AnyKeyUser, CurrentUser, StateDep, TxDep, client_ip
from sizzle.api.mailing import mail_password_reset, mail_verification
from sizzle.api.openapi import error_responses
from sizzle.api.schemas import (
    EmailVerificationIn,
    LoginIn,
    PasswordResetConfirmIn,
    PasswordResetIn,
    RegisterIn,
    RegisterOut,
    TokenOut,
    UserOut,
)
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


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=RegisterOut,
    responses=error_responses(409),
)
async def register(
    body: RegisterIn, state: StateDep, request: Request, background: BackgroundTasks
) -> RegisterOut:
    """A new account with the sign-up free minutes; a mail asks to confirm the address."""
    await state.rate_limiter.sign_up_attempt(ip=client_ip(request))
    async with state.db.transaction() as tx:
        user = await accounts.create_user(
            tx,
            email=body.email,
            password=body.password,
            name=body.name,
            now=state.clock.now(),
            free_minutes=state.settings.free_minutes,
        )
        summary = await accounts.summarize(tx, user)
    await mail_verification(state, background, user.id)
    token = _token(state, user.id)
    return RegisterOut(**token.model_dump(), user=user_out(summary))


@router.post("/login", response_model=TokenOut, responses=error_responses(401))
async def login(body: LoginIn, state: StateDep, request: Request) -> TokenOut:
    """A sign-in token. Attempts are limited per address; wrong passwords for one account from
    one address make that address wait longer each time (429 with Retry-After)."""
    async with state.rate_limiter.password_attempt(email=body.email, ip=client_ip(request)):
        user = await accounts.sign_in(
            state.db, email=body.email, password=body.password, now=state.clock.now(), via="api"
        )
    return _token(state, user.id)


@router.post(
    "/verify-email",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(400),
)
async def verify_email(body: EmailVerificationIn, state: StateDep) -> None:
    """Confirm the address with the token from the mailed link (no sign-in needed)."""
    await state.account_links.verify_email(body.token)


@router.post("/verify-email/resend", status_code=status.HTTP_202_ACCEPTED)
async def resend_verification(
    user: CurrentUser, state: StateDep, request: Request, background: BackgroundTasks
) -> dict[str, bool]:
    """Mail the confirmation link again; `{"sent": false}` when the address is confirmed."""
    await state.rate_limiter.account_mail(email=user.email, ip=client_ip(request))
    return {"sent": await mail_verification(state, background, user.id)}


@router.post("/password-reset", status_code=status.HTTP_202_ACCEPTED)
async def request_password_reset(
    body: PasswordResetIn, state: StateDep, request: Request, background: BackgroundTasks
) -> dict[str, str]:
    """Mail a reset link if the address has an account. The answer is the same either way.
    Limited per address and per account, never by wrong passwords."""
    await state.rate_limiter.account_mail(email=body.email, ip=client_ip(request))
    await mail_password_reset(state, background, body.email)
    return {"message": "if an account has this address, a reset link is on its way"}


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(400, 422),
)
async def reset_password(body: PasswordResetConfirmIn, state: StateDep, request: Request) -> None:
    """Set a new password with the token from the mailed link; every older sign-in ends."""
    await state.rate_limiter.password_reset(ip=client_ip(request))
    await state.account_links.reset_password(body.token, body.password)


@router.get("/me", response_model=UserOut)
async def me(user: AnyKeyUser, tx: TxDep) -> UserOut:
    return user_out(await accounts.summarize(tx, user))
