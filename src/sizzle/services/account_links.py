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
from sizzle.services import accounts, audit, free_minutes
from sizzle.services.mail import Mail
from sizzle.settings import Settings

VERIFY_EMAIL = "verify_email"
INVALID_LINK = (
    "This link is not valid: it may be cut short or belong to an account that is gone. Open "
    "the newest link from your mail, or ask for a new one."
)
USED_RESET_LINK = (
    "This reset link was already used, or a newer one was asked for. Ask for a new link: it "
    "comes by mail in a minute."
)
RESET_PASSWORD = "reset_password"  # noqa: S105 - a token purpose, not a password


def _verify_mark(user: User) -> str:
    verified = user.email_verified_at.isoformat() if user.email_verified_at else ""
    return fingerprint(VERIFY_EMAIL, user.email, verified)


def _reset_mark(user: User) -> str:
    return fingerprint(RESET_PASSWORD, user.password_hash)


def _already_verified(user: User, mark: str) -> bool:
    """Whether a verification link's work is done (following it twice is fine); BadRequest
    for a link made for another address."""
    if _verify_mark(user) == mark:
        return False
    if user.email_verified_at is not None:
        return True
    raise BadRequest(INVALID_LINK, code="invalid_link")


async def _linked_user(tx: AsyncSession, user_id: str, *, lock: bool = True) -> User:
    """The user a link names, locked for the change it makes; a deleted one is no more."""
    user = await tx.get(User, user_id, with_for_update=lock)
    if user is None or user.deleted_at is not None:
        raise BadRequest(INVALID_LINK, code="invalid_link")
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
                "Open this link to confirm that this address is yours"
                + (
                    f" and get your {self.settings.free_minutes} free minutes"
                    if self.settings.free_minutes
                    else ""
                )
                + ":\n\n"
                f"{base_url}/verify-email?token={quote(token)}\n\n"
                f"The link works for {hours} hours. "
                "If you did not sign up for Sizzle, ignore this mail.\n"
            ),
        )

    def _read(self, token: str, purpose: str) -> tuple[str, str]:
        return read_account_token(
            token, purpose, secret=self.settings.resolved_secret_key, now=self.clock.now()
        )

    async def check_verification_link(self, token: str) -> bool:
        """Before the page shows its button: BadRequest for a link that cannot work (bad,
        expired, another address's); True when the address is confirmed already."""
        user_id, mark = self._read(token, VERIFY_EMAIL)
        async with self.db.read() as tx:
            return _already_verified(await _linked_user(tx, user_id, lock=False), mark)

    async def verify_email(self, token: str) -> User:
        """Confirm the address, and give the sign-up free minutes if it never had them."""
        user_id, mark = self._read(token, VERIFY_EMAIL)
        now = self.clock.now()
        async with self.db.transaction() as tx:
            user = await _linked_user(tx, user_id)
            if _already_verified(user, mark):
                return user
            user.email_verified_at = now
            audit.record(
                tx, "auth.email_verified", actor=f"user:{user.id}", now=now, user_id=user.id
            )
            await self._confirmed(tx, user)
            return user

    async def _confirmed(self, tx: AsyncSession, user: User) -> None:
        await free_minutes.grant_once(
            tx,
            user,
            self.settings.free_minutes,
            secret=self.settings.resolved_secret_key,
            now=self.clock.now(),
            actor=f"user:{user.id}",
        )

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

    async def check_reset_link(self, token: str) -> None:
        """Before the page shows its form: BadRequest for a link that is bad, expired, or used
        (or voided by a newer reset), with what to do next."""
        user_id, mark = self._read(token, RESET_PASSWORD)
        async with self.db.read() as tx:
            user = await _linked_user(tx, user_id, lock=False)
            if _reset_mark(user) != mark:
                raise BadRequest(USED_RESET_LINK, code="link_used")

    async def reset_password(self, token: str, new_password: str) -> User:
        """Set a new password from a reset link; every earlier sign-in of the account ends.
        The link also proves the mailbox, so the address counts as confirmed."""
        user_id, mark = self._read(token, RESET_PASSWORD)
        now = self.clock.now()
        async with self.db.transaction() as tx:
            user = await _linked_user(tx, user_id)
            if _reset_mark(user) != mark:
                raise BadRequest(USED_RESET_LINK, code="link_used")
            accounts.set_password(tx, user, new_password, now=now, action="auth.password_reset")
            if user.email_verified_at is None:
                user.email_verified_at = now
                await self._confirmed(tx, user)
            return user
