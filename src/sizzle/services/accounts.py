"""Accounts: sign-up with free minutes, sign-in, admin-made users and credit grants."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.database import Database
from sizzle.db.models import User
from sizzle.domain.suspension import MAX_NOTE, SuspensionReason, suspended_message
from sizzle.domain.tiers import PLANS
from sizzle.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from sizzle.security import hash_password, verify_password
from sizzle.services import audit, ledger
from sizzle.services import free_minutes as free_minutes_service

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256  # the API's limit, and the pages'
MAX_NAME_LENGTH = 100
WRONG_CREDENTIALS = (
    "That email and password do not match an account. Check both and try again, or choose a "
    "new password with “Forgot your password?”."
)
EMAIL_TAKEN = (
    "An account with this email already exists. Sign in instead, or choose a new password "
    "with “Forgot your password?” if you forgot it."
)
MAX_GRANT_MICROS = 1_000_000 * 1_000_000  # one million dollars
_COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "12345678",
        "123456789",
        "qwertyui",
        "iloveyou",
        "sunshine",
        "letmein1",
        "football",
        "baseball",
        "welcome1",
        "admin123",
        "abc12345",
        "passw0rd",
    }
)


@dataclass(frozen=True)
class UserSummary:
    user: User
    balances: ledger.Balances


def normal_email(email: str) -> str:
    """An address as accounts are keyed by it, in lower case: one plain address by
    email-validator's rules (the API's), so a list, a display name, CRLF, markup or a NUL is
    refused as bad input before it can reach a mail header or the database."""
    try:
        checked = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed(
            f"That is not an email address we can use: {exc} Check it and type it again.",
            code="bad_email",
        ) from None
    return checked.normalized.lower()


def check_password_strength(password: str, *, email: str) -> None:
    """Refuse passwords that are short, too long, common, or one repeated character."""
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"A password can be at most {MAX_PASSWORD_LENGTH} characters long. Choose a shorter "
            "one.",
            code="weak_password",
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"Your password must be at least {MIN_PASSWORD_LENGTH} characters long. Choose a "
            "longer one: a few unrelated words are easy to remember.",
            code="weak_password",
        )
    lowered = password.lower()
    if (
        lowered in _COMMON_PASSWORDS
        or len(set(password)) < 4
        or lowered == email.lower()
        or lowered == email.split("@")[0].lower()
    ):
        raise ValidationFailed(
            "That password is too easy to guess. Choose another: a few unrelated words work well.",
            code="weak_password",
        )


async def create_user(
    tx: AsyncSession,
    *,
    email: str,
    password: str,
    now: datetime,
    free_minutes: int,
    name: str | None = None,
    plan: str = "free",
    is_admin: bool = False,
    actor: str | None = None,
    terms_version: str | None = None,
) -> User:
    """A new user with ledger accounts. `free_minutes` are granted now: an operator's choice
    (the command line); sign-ups pass 0 and get theirs once the address is confirmed
    (services/free_minutes.py). `terms_version`: the legal documents the user accepted.
    `actor` is who made it when that is not the user signing up."""
    email = normal_email(email)
    if name is not None and len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed(
            f"Your name can be at most {MAX_NAME_LENGTH} characters long. Shorten it, or leave "
            "it out: it is optional.",
            code="name_too_long",
        )
    if plan not in PLANS:
        raise BadRequest(f"unknown plan {plan!r}; plans: {', '.join(PLANS)}")
    check_password_strength(password, email=email)
    if await tx.scalar(select(User.id).where(User.email == email)):
        raise Conflict(EMAIL_TAKEN, code="email_taken")
    user = User(
        id=uuid.uuid4().hex,
        email=email,
        name=name,
        password_hash=hash_password(password),
        plan=plan,
        is_admin=is_admin,
        is_active=True,
        created_at=now,
    )
    tx.add(user)
    try:
        await tx.flush()
    except IntegrityError as exc:  # a concurrent sign-up with the same email
        raise Conflict(EMAIL_TAKEN, code="email_taken") from exc
    await ledger.open_user_accounts(tx, user.id)
    await ledger.grant_free_minutes(
        tx, user.id, free_minutes, key=free_minutes_service.grant_key(user.id), now=now
    )
    audit.record(
        tx,
        "account.created",
        actor=actor or f"user:{user.id}",
        now=now,
        user_id=user.id,
        detail=f"plan {plan}" + (", operator" if is_admin else ""),
    )
    if terms_version is not None:
        accept_terms(tx, user, terms_version, now=now)
    return user


def accept_terms(tx: AsyncSession, user: User, version: str, *, now: datetime) -> None:
    """Keep on the account, and in the audit log, that the user accepted the legal documents
    of `version` (sizzle.legal's acceptance version) now."""
    user.terms_version = version
    user.terms_accepted_at = now
    audit.record(
        tx, "legal.accepted", actor=f"user:{user.id}", now=now, user_id=user.id, detail=version
    )


async def authenticate(tx: AsyncSession, *, email: str, password: str) -> User:
    user = await tx.scalar(select(User).where(User.email == normal_email(email)))
    if user is None or not verify_password(user.password_hash, password):
        raise Unauthorized(WRONG_CREDENTIALS, code="invalid_credentials")
    if not user.is_active:
        raise suspended(user)
    return user


def suspended(user: User) -> Forbidden:
    """The refusal a suspended user gets, everywhere: why, and what to do next."""
    return Forbidden(
        suspended_message(user.suspension_reason, user.suspension_note),
        code="account_suspended",
        details={"reason": user.suspension_reason or "unspecified"},
    )


async def sign_in(db: Database, *, email: str, password: str, now: datetime, via: str) -> User:
    """Check a password sign-in and put it in the audit log, refused or not (`via`: api, web)."""
    try:
        async with db.transaction() as tx:
            user = await authenticate(tx, email=email, password=password)
            audit.record(
                tx, "auth.sign_in", actor=f"user:{user.id}", now=now, user_id=user.id, detail=via
            )
            return user
    except (Unauthorized, Forbidden) as exc:
        async with db.transaction() as tx:
            known = await tx.scalar(select(User.id).where(User.email == normal_email(email)))
            audit.record(
                tx,
                "auth.sign_in_failed",
                actor=f"user:{known}" if known else "anonymous",
                now=now,
                user_id=known,
                detail=f"{via}: {exc.code} for {normal_email(email)[:200]}",
            )
        raise


async def get_active_user(tx: AsyncSession, user_id: str, *, issued_at: int | None = None) -> User:
    """The user behind a token, unless the account is gone or suspended, or (given the
    token's `issued_at`) its tokens were revoked since by a password change."""
    return ensure_active(await tx.get(User, user_id), issued_at=issued_at)


def ensure_active(user: User | None, *, issued_at: int | None = None) -> User:
    """`user` (read for a token or a key), unless it is gone, suspended, or its tokens issued
    at `issued_at` were revoked since by a password change."""
    if user is None or user.deleted_at is not None:
        raise Unauthorized(
            "The account behind this token no longer exists. Sign in with another account, or "
            "create a new one.",
            code="invalid_token",
        )
    if not user.is_active:
        raise suspended(user)
    if (
        issued_at is not None
        and user.tokens_valid_from is not None
        and issued_at < int(user.tokens_valid_from.timestamp())
    ):
        raise Unauthorized(
            "This sign-in ended when the account's password was changed. Sign in again with "
            "the new password.",
            code="token_revoked",
        )
    return user


async def get_user_by_email(tx: AsyncSession, email: str) -> User:
    user = await tx.scalar(select(User).where(User.email == normal_email(email)))
    if user is None:
        raise NotFound(f"no user with email {email}")
    return user


async def summarize(tx: AsyncSession, user: User) -> UserSummary:
    return UserSummary(user=user, balances=await ledger.balances(tx, user.id))


async def grant_credits(
    tx: AsyncSession,
    user: User,
    micros: int,
    *,
    now: datetime,
    granted_by: str,
    actor: str | None = None,
) -> None:
    """Add credit to a user: a ledger entry like any other, from the platform's grants account."""
    if micros <= 0:
        raise ValidationFailed("a grant must be a positive amount")
    if micros > MAX_GRANT_MICROS:
        # Far past any real top-up; also keeps balances inside the ledger's 64-bit integers.
        raise ValidationFailed("a single grant may be at most $1,000,000")
    key = f"grant:{uuid.uuid4().hex}"
    await ledger.grant_credits(
        tx, user.id, micros, key=key, now=now, memo=f"credit granted by {granted_by}"
    )
    audit.record(
        tx,
        "admin.credit_granted",
        actor=actor or granted_by[:64],
        now=now,
        user_id=user.id,
        target=f"ledger:{key}",
        detail=f"{micros} usd_micros",
    )


async def change_password(
    tx: AsyncSession, user: User, *, current: str, new: str, now: datetime
) -> None:
    """Replace the user's password, once the current one is proven and the new one is strong;
    every sign-in made before now ends."""
    if not verify_password(user.password_hash, current):
        raise Unauthorized(
            "That is not your current password. Type it again; if you forgot it, sign out and "
            "use “Forgot your password?” on the sign-in page.",
            code="invalid_credentials",
        )
    set_password(tx, user, new, now=now, action="auth.password_changed")
    await tx.flush()


def set_password(tx: AsyncSession, user: User, new: str, *, now: datetime, action: str) -> None:
    check_password_strength(new, email=user.email)
    user.password_hash = hash_password(new)
    user.tokens_valid_from = now
    audit.record(tx, action, actor=f"user:{user.id}", now=now, user_id=user.id)


def change_plan(tx: AsyncSession, target: User, plan: str, *, actor: str, now: datetime) -> bool:
    """Move an account to `plan` (which tiers it may rent, how many sessions at once), as an
    operator does when a user asks; recorded in the audit log. False when it already was.
    Sessions already running go on; the new limits hold from the next launch."""
    if plan not in PLANS:
        raise ValidationFailed(
            f"There is no plan called “{plan}”. The plans are: {', '.join(PLANS)}.",
            code="unknown_plan",
        )
    if target.plan == plan:
        return False
    audit.record(
        tx,
        "admin.plan_changed",
        actor=actor,
        now=now,
        user_id=target.id,
        detail=f"{target.plan} -> {plan}",
    )
    target.plan = plan
    return True


def set_suspended(
    tx: AsyncSession,
    target: User,
    *,
    suspended: bool,
    operator: User,
    now: datetime,
    reason: SuspensionReason | None = None,
    note: str | None = None,
) -> None:
    """Suspend an account (no sign-in, no API) for `reason`, in the operator's `note` too,
    both shown to the user; or let it back in. Never one's own."""
    if suspended and target.id == operator.id:
        raise Conflict(
            "You cannot suspend your own account. Ask another operator to do it.", code="self"
        )
    note = (note or "").strip()[:MAX_NOTE] or None
    if suspended and reason is SuspensionReason.OTHER and not note:
        raise ValidationFailed(
            "Write a note saying why: with “another reason”, the note is what the user reads.",
            code="note_required",
        )
    target.is_active = not suspended
    target.suspension_reason = reason.value if suspended and reason else None
    target.suspension_note = note if suspended else None
    audit.record(
        tx,
        "admin.user_suspended" if suspended else "admin.user_unsuspended",
        actor=f"operator:{operator.id}",
        now=now,
        user_id=target.id,
        detail=f"{reason.value}: {note or ''}".rstrip(": ") if suspended and reason else None,
    )
