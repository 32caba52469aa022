"""Accepting new versions of the legal documents at sign-in (the pages).

A sign-in whose user has not accepted the current documents checks the password as usual,
then, instead of signing the browser in, hands the page a short-lived signed token that says
so. The acceptance form sends it back with the ticked box: the acceptance is kept on the
account and in the audit log, and only then is the browser signed in. The token is bound to
the password hash and to both versions, so a password change or another new version
meanwhile voids it.

The API does not stop working when a new version is published (scripts would stop without
anyone to read why): `POST /api/v1/auth/login` and `GET /api/v1/auth/terms` say
`must_accept`, and `POST /api/v1/auth/terms` accepts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sizzle.db.database import Database
from sizzle.db.models import User
from sizzle.errors import BadRequest, Conflict, Unauthorized
from sizzle.security import fingerprint, make_account_token, read_account_token
from sizzle.services import accounts

ACCEPT_TERMS = "accept_terms"
PENDING = timedelta(minutes=15)
_START_AGAIN = "This sign-in took too long or is no longer valid. Sign in again to go on."


def _mark(user: User, current: str) -> str:
    return fingerprint(ACCEPT_TERMS, user.password_hash, user.terms_version or "", current)


def pending_token(user: User, *, version: str, secret: str, now: datetime) -> str:
    """What the acceptance form carries: this user proved the password now."""
    return make_account_token(
        ACCEPT_TERMS,
        user.id,
        fingerprint=_mark(user, version),
        secret=secret,
        now=now,
        lifetime=PENDING,
    )


async def accept_pending(
    db: Database, token: str, *, version: str, secret: str, now: datetime
) -> str:
    """Accept `version` for the user the token names; their id, to sign the browser in."""
    try:
        user_id, mark = read_account_token(token, ACCEPT_TERMS, secret=secret, now=now)
    except BadRequest:
        raise Unauthorized(_START_AGAIN, code="sign_in_expired") from None
    async with db.transaction() as tx:
        user = await tx.get(User, user_id, with_for_update=True)
        user = accounts.ensure_active(user)
        if _mark(user, version) != mark:
            raise Unauthorized(_START_AGAIN, code="sign_in_expired")
        accounts.accept_terms(tx, user, version, now=now)
        return user.id


def check_offered(version: str, *, current: str) -> None:
    """Refuse accepting a version other than the one in force: the user read another text."""
    if version != current:
        raise Conflict(
            f"The legal documents changed since that version: the current one is {current}. "
            "Read them again (GET /api/v1/auth/terms) and accept that version.",
            code="terms_changed",
        )
