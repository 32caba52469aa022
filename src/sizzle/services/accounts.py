"""Accounts: sign-up with free minutes, sign-in, admin-made users and credit grants."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import User
from sizzle.domain.tiers import PLANS
from sizzle.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from sizzle.security import hash_password, verify_password
from sizzle.services import ledger

MIN_PASSWORD_LENGTH = 8
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


def check_password_strength(password: str, *, email: str) -> None:
    """Refuse passwords that are short, common, or one repeated character."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"password must be at least {MIN_PASSWORD_LENGTH} characters", code="weak_password"
        )
    lowered = password.lower()
    if (
        lowered in _COMMON_PASSWORDS
        or len(set(password)) < 4
        or lowered == email.lower()
        or lowered == email.split("@")[0].lower()
    ):
        raise ValidationFailed("password is too easy to guess", code="weak_password")


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
) -> User:
    """A new user with ledger accounts and their sign-up free minutes."""
    email = email.strip().lower()
    if plan not in PLANS:
        raise BadRequest(f"unknown plan {plan!r}; plans: {', '.join(PLANS)}")
    check_password_strength(password, email=email)
    if await tx.scalar(select(User.id).where(User.email == email)):
        raise Conflict("an account with this email already exists", code="email_taken")
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
        raise Conflict("an account with this email already exists", code="email_taken") from exc
    await ledger.open_user_accounts(tx, user.id)
    await ledger.grant_free_minutes(
        tx, user.id, free_minutes, key=f"signup:{user.id}:free_minutes", now=now
    )
    return user


async def authenticate(tx: AsyncSession, *, email: str, password: str) -> User:
    user = await tx.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not verify_password(user.password_hash, password):
        raise Unauthorized("wrong email or password", code="invalid_credentials")
    if not user.is_active:
        raise Forbidden("this account is suspended", code="account_suspended")
    return user


async def get_active_user(tx: AsyncSession, user_id: str) -> User:
    user = await tx.get(User, user_id)
    if user is None:
        raise Unauthorized("the account behind this token no longer exists", code="invalid_token")
    if not user.is_active:
        raise Forbidden("this account is suspended", code="account_suspended")
    return user


async def get_user_by_email(tx: AsyncSession, email: str) -> User:
    user = await tx.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"no user with email {email}")
    return user


async def summarize(tx: AsyncSession, user: User) -> UserSummary:
    return UserSummary(user=user, balances=await ledger.balances(tx, user.id))


async def grant_credits(
    tx: AsyncSession, user: User, micros: int, *, now: datetime, granted_by: str
) -> None:
    """Add credit to a user: a ledger entry like any other, from the platform's grants account."""
    if micros <= 0:
        raise ValidationFailed("a grant must be a positive amount")
    if micros > MAX_GRANT_MICROS:
        # Far past any real top-up; also keeps balances inside the ledger's 64-bit integers.
        raise ValidationFailed("a single grant may be at most $1,000,000")
    await ledger.grant_credits(
        tx,
        user.id,
        micros,
        key=f"grant:{uuid.uuid4().hex}",
        now=now,
        memo=f"credit granted by {granted_by}",
    )


async def change_password(tx: AsyncSession, user: User, *, current: str, new: str) -> None:
    """Replace the user's password, once the current one is proven and the new one is strong."""
    if not verify_password(user.password_hash, current):
        raise Unauthorized("your current password is not right", code="invalid_credentials")
    check_password_strength(new, email=user.email)
    user.password_hash = hash_password(new)
    await tx.flush()
