"""API keys for scripts and the CLI: `sz_live_<prefix><secret>`.

A key is shown once, when it is made. Sizzle keeps its SHA-256 hash (a key is 256 bits of
randomness, so a fast hash is enough; nothing to stretch) and its prefix, which finds the row
in one indexed lookup; the hash is then compared in constant time. A key carries scopes; a
revoked or expired key is refused at once, since every request looks it up.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import ApiKey, User
from sizzle.errors import NotFound, Unauthorized, ValidationFailed
from sizzle.services import audit

KEY_PREFIX = "sz_live_"
SCOPES = {
    "sessions:read": "see my sessions, their events and metrics",
    "sessions:write": "launch, start, pause, resume and stop sessions",
    "billing:read": "see my balance, transactions, purchases and statements",
    "inference": "chat with my sessions' models (/v1/chat/completions)",
    "chats": "see, export, rename and delete my saved chats",
}
MAX_KEYS_PER_USER = 50
_LOOKUP_LENGTH = 12  # characters after `sz_live_` that find the key
_SECRET_LENGTH = 43  # base62: about 256 bits
_ALPHABET = string.ascii_letters + string.digits
# last_used_at is written at most this often per key, not on every request
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class KeyHolder:
    """Who a presented key speaks for, and what it may do."""

    key_id: str
    user_id: str
    scopes: frozenset[str]
    use_due: bool = False  # last_used_at is older than LAST_USED_RESOLUTION: record_use it


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def parse_scopes(scopes: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(scopes))
    unknown = [scope for scope in chosen if scope not in SCOPES]
    if unknown or not chosen:
        raise ValidationFailed(
            f"scopes must be some of {', '.join(SCOPES)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            code="bad_scopes",
        )
    return chosen


async def create_key(
    tx: AsyncSession,
    user: User,
    *,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None,
    now: datetime,
) -> tuple[ApiKey, str]:
    """A new key of the user's; (its row, the key itself, which is never shown again)."""
    chosen = parse_scopes(scopes)
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed("expires_at must be in the future", code="bad_expiry")
    live = await tx.scalars(
        select(ApiKey.id).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
    )
    if len(list(live)) >= MAX_KEYS_PER_USER:
        raise ValidationFailed(
            f"at most {MAX_KEYS_PER_USER} keys at once; revoke one first", code="too_many_keys"
        )
    lookup = _random(_LOOKUP_LENGTH)
    key = f"{KEY_PREFIX}{lookup}{_random(_SECRET_LENGTH)}"
    row = ApiKey(
        id=uuid.uuid4().hex,
        user_id=user.id,
        name=name,
        prefix=lookup,
        key_hash=_digest(key),
        scopes=" ".join(chosen),
        created_at=now,
        expires_at=expires_at,
    )
    tx.add(row)
    await tx.flush()
    audit.record(
        tx,
        "key.created",
        actor=f"user:{user.id}",
        now=now,
        user_id=user.id,
        target=f"key:{row.id}",
        detail=f"{name}: {row.scopes}",
    )
    return row, key


async def list_keys(tx: AsyncSession, user_id: str) -> list[ApiKey]:
    return list(
        await tx.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user_id)
            .order_by(ApiKey.created_at.desc(), ApiKey.id)
        )
    )


async def revoke_key(tx: AsyncSession, key_id: str, *, user_id: str, now: datetime) -> ApiKey:
    """Revoke one of the user's keys (again is harmless); another user's key is a 404."""
    row = await tx.get(ApiKey, key_id)
    if row is None or row.user_id != user_id:
        raise NotFound("API key not found")
    if row.revoked_at is None:
        row.revoked_at = now
        audit.record(
            tx,
            "key.revoked",
            actor=f"user:{user_id}",
            now=now,
            user_id=user_id,
            target=f"key:{row.id}",
        )
    return row


async def check_key(tx: AsyncSession, key: str, *, now: datetime) -> KeyHolder:
    """The holder of a presented key; 401 for anything but a live key. Reads only, so that it
    may run in a read transaction; `record_use` writes the last use when `use_due` says so."""
    lookup = key[len(KEY_PREFIX) : len(KEY_PREFIX) + _LOOKUP_LENGTH]
    row = None
    if looks_like_key(key) and len(lookup) == _LOOKUP_LENGTH:
        row = await tx.scalar(select(ApiKey).where(ApiKey.prefix == lookup))
    if row is None or not hmac.compare_digest(row.key_hash, _digest(key)):
        raise Unauthorized("this API key is not valid", code="invalid_api_key")
    if row.revoked_at is not None:
        raise Unauthorized("this API key was revoked", code="api_key_revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("this API key has expired", code="api_key_expired")
    return KeyHolder(
        key_id=row.id,
        user_id=row.user_id,
        scopes=frozenset(row.scopes.split()),
        use_due=row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION,
    )


async def record_use(tx: AsyncSession, key_id: str, *, now: datetime) -> None:
    """Note that the key was used now, unless a concurrent request just did."""
    await tx.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
    )
