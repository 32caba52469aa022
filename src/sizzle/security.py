"""Password hashes (argon2) and access tokens (JWT)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from typing import NamedTuple

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sizzle.errors import BadRequest, Unauthorized

_hasher = PasswordHasher()
JWT_ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_access_token(user_id: str, *, secret: str, now: datetime, lifetime: timedelta) -> str:
    payload = {
        "sub": user_id,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(payload, secret, algorithm=JWT_ALGORITHM)


class AccessToken(NamedTuple):
    user_id: str
    issued_at: int  # epoch seconds: refused when the user's tokens were revoked after it


# Tokens whose signature was checked: (secret, token) -> (subject, issued at, expires at).
# Checking a signature is a tenth of a cached read's cost; a token's expiry is still checked
# on every use. Only good tokens get in, and the bound is crude: a full cache starts afresh.
_VERIFIED_MAX = 4096
_verified: dict[tuple[str, str], tuple[str, int, int]] = {}


def decode_access_token(token: str, *, secret: str, now: datetime) -> AccessToken:
    """The user in a valid, unexpired token; Unauthorized otherwise."""
    known = _verified.get((secret, token))
    if known is None:
        known = _verify_access_token(token, secret=secret)
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        _verified[(secret, token)] = known
    subject, issued_at, expires_at = known
    # Expiry is checked against the injected clock, not the wall clock.
    if expires_at <= int(now.timestamp()):
        raise Unauthorized("access token expired, sign in again", code="token_expired")
    return AccessToken(subject, issued_at)


def _verify_access_token(token: str, *, secret: str) -> tuple[str, int, int]:
    try:
        payload = jwt.decode(
            token, secret, algorithms=[JWT_ALGORITHM], options={"verify_exp": False}
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid access token", code="invalid_token") from exc
    subject = payload.get("sub")
    issued_at = payload.get("iat", 0)
    expires_at = payload.get("exp", 0)
    if not isinstance(subject, str) or not all(isinstance(t, int) for t in (issued_at, expires_at)):
        raise Unauthorized("invalid access token", code="invalid_token")
    return subject, issued_at, expires_at


# Links mailed to a user (email verification, password reset) are signed with a key derived
# from the secret key, so one can never pass for a sign-in token, nor the other way round.
def _account_token_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"sizzle account tokens", hashlib.sha256).digest()


def fingerprint(*parts: str) -> str:
    """A short digest of what a token depends on: when that changes, the token is spent."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]


def make_account_token(
    purpose: str, user_id: str, *, fingerprint: str, secret: str, now: datetime, lifetime: timedelta
) -> str:
    payload = {
        "pur": purpose,
        "uid": user_id,
        "fp": fingerprint,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(payload, _account_token_key(secret), algorithm=JWT_ALGORITHM)


BAD_LINK = (
    "This link is not valid: it may be cut short. Open the newest link from your mail, or ask "
    "for a new one."
)


def read_account_token(token: str, purpose: str, *, secret: str, now: datetime) -> tuple[str, str]:
    """(user id, fingerprint) of a valid, unexpired token made for `purpose`."""
    try:
        payload = jwt.decode(
            token,
            _account_token_key(secret),
            algorithms=[JWT_ALGORITHM],
            options={"verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise BadRequest(BAD_LINK, code="invalid_link") from exc
    user_id, mark = payload.get("uid"), payload.get("fp")
    if payload.get("pur") != purpose or not isinstance(user_id, str) or not isinstance(mark, str):
        raise BadRequest(BAD_LINK, code="invalid_link")
    if int(payload.get("exp", 0)) <= int(now.timestamp()):
        raise BadRequest(
            "This link has expired. Ask for a new one: it comes by mail in a minute.",
            code="link_expired",
        )
    return user_id, mark
