"""Sign-up, sign-in, the legal documents accepted, and who am I.

The legal documents (Terms of Service, Acceptable Use Policy, Privacy Policy) are accepted
at sign-up (`accept_terms: true`). When a new version is published, tokens and API keys keep
working, so that no script stops without anyone to read why; `POST /auth/login` answers
`terms_must_accept: true` and `GET /auth/terms` says what changed, until the user accepts
with `POST /auth/terms` (or at their next sign-in on the web, which asks before going on).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, BackgroundTasks, Request, status
from pydantic import BaseModel, ConfigDict, Field

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
from sizzle.db.models import User
from sizzle.errors import ValidationFailed
from sizzle.legal import library
from sizzle.security import create_access_token
from sizzle.services import accounts, legal_acceptance
from sizzle.state import AppState

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

TERMS_NOT_ACCEPTED = (
    "Accept the Terms of Service, the Acceptable Use Policy and the Privacy Policy to make an "
    "account: read them on the site (/legal/terms, /legal/acceptable-use, /legal/privacy) "
    'and send "accept_terms": true.'
)


class LegalDocumentOut(BaseModel):
    slug: str
    title: str
    version: str
    url: str = Field(description="The page that shows it, on this site.")


class TermsOut(BaseModel):
    """The legal documents in force, and what the user (if signed in) accepted."""

    current_version: str = Field(description="What accepting now accepts: each document's.")
    documents: list[LegalDocumentOut]
    accepted_version: str | None = None
    accepted_at: datetime | None = None
    must_accept: bool = Field(
        False, description="The user accepted another version, or none: accept this one."
    )


class TermsAcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(
        min_length=1,
        max_length=200,
        description="The `current_version` read: 409 `terms_changed` if another is in force.",
    )


class LoginOut(TokenOut):
    terms_must_accept: bool = Field(
        False,
        description="A new version of the legal documents is in force and the user has not "
        "accepted it: show them GET /api/v1/auth/terms and POST /api/v1/auth/terms.",
    )


def _terms(state: AppState, accepted: str | None, at: datetime | None) -> TermsOut:
    legal = library(state.settings.legal_dir)
    current = legal.acceptance_version()
    base = state.settings.public_base_url
    return TermsOut(
        current_version=current,
        documents=[
            LegalDocumentOut(
                slug=doc.kind.slug,
                title=doc.kind.title,
                version=doc.version,
                url=f"{base}/legal/{doc.kind.slug}",
            )
            for doc in legal.documents()
        ],
        accepted_version=accepted,
        accepted_at=at,
        must_accept=accepted != current,
    )


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
    responses=error_responses(409, 422),
)
async def register(
    body: RegisterIn, state: StateDep, request: Request, background: BackgroundTasks
) -> RegisterOut:
    """A new account, once `accept_terms` is true (else 422 `terms_not_accepted`). A mail
    asks to confirm the address; the sign-up free minutes come with the confirmation, once
    per address ever."""
    if not body.accept_terms:
        raise ValidationFailed(TERMS_NOT_ACCEPTED, code="terms_not_accepted")
    await state.rate_limiter.sign_up_attempt(ip=client_ip(request))
    async with state.db.transaction() as tx:
        user = await accounts.create_user(
            tx,
            email=body.email,
            password=body.password,
            name=body.name,
            now=state.clock.now(),
            free_minutes=0,
            terms_version=library(state.settings.legal_dir).acceptance_version(),
        )
        summary = await accounts.summarize(tx, user)
    await mail_verification(state, background, user.id)
    token = _token(state, user.id)
    return RegisterOut(**token.model_dump(), user=user_out(summary))


@router.post("/login", response_model=LoginOut, responses=error_responses(401))
async def login(body: LoginIn, state: StateDep, request: Request) -> LoginOut:
    """A sign-in token. Attempts are limited per address; wrong passwords for one account from
    one address make that address wait longer each time (429 with Retry-After). A suspended
    account gets 403 `account_suspended`, with the reason. `terms_must_accept`: see
    POST /api/v1/auth/terms."""
    async with state.rate_limiter.password_attempt(email=body.email, ip=client_ip(request)):
        user = await accounts.sign_in(
            state.db, email=body.email, password=body.password, now=state.clock.now(), via="api"
        )
    current = library(state.settings.legal_dir).acceptance_version()
    return LoginOut(
        **_token(state, user.id).model_dump(), terms_must_accept=user.terms_version != current
    )


@router.get("/terms", response_model=TermsOut)
async def terms(user: AnyKeyUser, state: StateDep) -> TermsOut:
    """The legal documents in force, with their versions and pages, and what the user
    accepted; `must_accept` when that is not the version in force."""
    return _terms(state, user.terms_version, user.terms_accepted_at)


@router.post("/terms", response_model=TermsOut, responses=error_responses(409))
async def accept_terms(body: TermsAcceptIn, user: CurrentUser, state: StateDep) -> TermsOut:
    """Accept the legal documents of `version`, the one in force (409 `terms_changed` for
    another); kept on the account and in the audit log. A sign-in token only, not an API key:
    a person accepts."""
    current = library(state.settings.legal_dir).acceptance_version()
    legal_acceptance.check_offered(body.version, current=current)
    async with state.db.transaction() as tx:
        found = accounts.ensure_active(await tx.get(User, user.id, with_for_update=True))
        accounts.accept_terms(tx, found, current, now=state.clock.now())
        return _terms(state, found.terms_version, found.terms_accepted_at)


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
