"""Links mailed to users: checking an email address, and resetting a forgotten password.

A link carries a signed token that expires, and that is spent by its own use: it is bound
to a fingerprint of what it changes (the password hash for a reset; the address and whether
it is verified for a check), so once the change is made the same link no longer matches.
No table of issued tokens is needed, and a reset also voids every older reset link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.clock import Clock
from sizzle.db.database import Database
from sizzle.db.models import User
from sizzle.errors import BadRequest
from sizzle.security import fingerprint, make_account_token, read_account_token
from sizzle.services import accounts, audit
from sizzle.services.mail import Mail
from sizzle.settings import Settings

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"  # noqa: S105 - a token purpose, not a password


def _verify_mark(user: User) -> str:
    verified = user.email_verified_at.isoformat() if user.email_verified_at else ""
    return fingerprint(VERIFY_EMAIL, user.email, verified)


def _reset_mark(user: User) -> str:
    return fingerprint(RESET_PASSWORD, user.password_hash)


async def _linked_user(tx: AsyncSession, user_id: str) -> User:
    """The user a link names, locked for the change it makes; a deleted one is no more."""
    user = await tx.get(User, user_id, with_for_update=True)
    if user is None or user.deleted_at is not None:
        raise BadRequest("this link is not valid", code="invalid_link")
    return user


@dataclass
class AccountLinks:
    db: Database
    clock: Clock
    settings: Settings

    def _token(self, purpose: str, user: User, mark: str, lifetime: timedelta) -> str:
        return make_account_token(
            purpose,
            user.id,
            fingerprint=mark,
            secret=self.settings.resolved_secret_key,
            now=self.clock.now(),
            lifetime=lifetime,
        )

    # -- email verification ------------------------------------------------------------------

    async def verification_mail(self, user_id: str, *, base_url: str) -> Mail | None:
        """The mail with a link that proves the address is the user's; None if it is proven.
        Callers send mails after answering (FastAPI background tasks), so a slow mail server
        never holds a page up, nor tells by its timing whether an address has an account."""
        now = self.clock.now()
        async with self.db.transaction() as tx:
            user = await accounts.get_active_user(tx, user_id)
            if user.email_verified_at is not None:
                return None
            hours = self.settings.email_verification_hours
            token = self._token(VERIFY_EMAIL, user, _verify_mark(user), timedelta(hours=hours))
            audit.record(
                tx, "auth.verification_sent", actor=f"user:{user.id}", now=now, user_id=user.id
            )
            email = user.email
        return Mail(
            to=email,
            subject="Confirm your email for Sizzle",
            body=(
                "Welcome to Sizzle!\n\n"
                "Open this link to confirm that this address is yours:\n\n"
                f"{base_url}/verify-email?token={quote(token)}\n\n"
                f"The link works for {hours} hours. "
                "If you did not sign up for Sizzle, ignore this mail.\n"
            ),
        )

    async def verify_email(self, token: str) -> User:
        user_id, mark = read_account_token(
            token, VERIFY_EMAIL, secret=self.settings.resolved_secret_key, now=self.clock.now()
        )
        now = self.clock.now()
        async with self.db.transaction() as tx:
            user = await _linked_user(tx, user_id)
            if _verify_mark(user) != mark:
                if user.email_verified_at is not None:
                    return user  # already confirmed: following the link twice is fine
                raise BadRequest("this link is not valid", code="invalid_link")
            user.email_verified_at = now
            audit.record(
                tx, "auth.email_verified", actor=f"user:{user.id}", now=now, user_id=user.id
            )
            return user

    # -- password reset ----------------------------------------------------------------------

    async def password_reset_mail(self, email: str, *, base_url: str) -> Mail | None:
        """A mail with a reset link, if the address has an account. The caller says the same
        either way, so that nobody can learn from it who has an account."""
        now = self.clock.now()
        async with self.db.transaction() as tx:
            user = await tx.scalar(
                select(User).where(
                    User.email == accounts.normal_email(email), User.deleted_at.is_(None)
                )
            )
            if user is None or not user.is_active:
                return None
            minutes = self.settings.password_reset_minutes
            token = self._token(RESET_PASSWORD, user, _reset_mark(user), timedelta(minutes=minutes))
            audit.record(
                tx,
                "auth.password_reset_requested",
                actor="anonymous",
                now=now,
                user_id=user.id,
            )
            address = user.email
        return Mail(
            to=address,
            subject="Reset your Sizzle password",
            body=(
                "Someone (we hope you) asked to reset the password of your Sizzle account.\n\n"
                f"Choose a new password here:\n\n{base_url}/reset-password?token={quote(token)}"
                f"\n\nThe link works for {minutes} minutes, once. If you did not ask, ignore "
                "this mail: your password stays as it is.\n"
            ),
        )

    async def reset_password(self, token: str, new_password: str) -> User:
        """Set a new password from a reset link; every earlier sign-in of the account ends.
        The link also proves the mailbox, so the address counts as confirmed."""
        user_id, mark = read_account_token(
            token, RESET_PASSWORD, secret=self.settings.resolved_secret_key, now=self.clock.now()
        )
        now = self.clock.now()
        async with self.db.transaction() as tx:
            user = await _linked_user(tx, user_id)
            if _reset_mark(user) != mark:
                raise BadRequest("this link was already used; ask for a new one", code="link_used")
            accounts.set_password(tx, user, new_password, now=now, action="auth.password_reset")
            user.email_verified_at = user.email_verified_at or now
            return user
