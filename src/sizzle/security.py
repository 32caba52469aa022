"""Password hashes (argon2) and access tokens (JWT)."""

from __future__ import annotations

from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sizzle.errors import Unauthorized

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


def decode_access_token(token: str, *, secret: str, now: datetime) -> str:
    """The user id in a valid, unexpired token; Unauthorized otherwise."""
    try:
        payload = jwt.decode(
            token, secret, algorithms=[JWT_ALGORITHM], options={"verify_exp": False}
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid access token", code="invalid_token") from exc
    # Expiry is checked against the injected clock, not the wall clock.
    if int(payload.get("exp", 0)) <= int(now.timestamp()):
        raise Unauthorized("access token expired, sign in again", code="token_expired")
    subject = payload.get("sub")
    if not isinstance(subject, str):
        raise Unauthorized("invalid access token", code="invalid_token")
    return subject
