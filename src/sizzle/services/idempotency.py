"""Idempotency keys for making sessions: the same key and request again answer the session
the first one made; the same key with another request is refused. Per user, kept a day.

The caller holds the user's row lock (sessions.launch_session takes it first), so two
requests of one user with one key, on two replicas, meet here one after the other."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import GpuSession, IdempotencyKey
from sizzle.errors import ValidationFailed

KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255
_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, as HTTP header values allow


def check_key(key: str) -> str:
    """The key as sent, or a 422 that says what a key may be."""
    if not _KEY.fullmatch(key):
        raise ValidationFailed(
            f"an Idempotency-Key is 1 to {MAX_KEY_LENGTH} visible ASCII characters "
            "(a UUID is a good one)",
            code="invalid_idempotency_key",
        )
    return key


def fingerprint(**request: object) -> str:
    """A hash of what was asked, its values already made canonical by the caller."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def earlier_session(
    tx: AsyncSession, *, user_id: str, key: str, fingerprint: str, now: datetime
) -> GpuSession | None:
    """The session this key already made, if it was made for the same request in the last
    day; None for a new key. The user's keys older than a day are forgotten here."""
    await tx.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id, IdempotencyKey.created_at < now - KEY_LIFETIME
        )
    )
    found = await tx.get(IdempotencyKey, (user_id, key))
    if found is None:
        return None
    if found.fingerprint != fingerprint:
        raise ValidationFailed(
            "this Idempotency-Key was used in the last 24 hours for a session with other "
            "settings; send a new key for a new session",
            code="idempotency_key_reused",
            details={"session_id": found.session_id},
        )
    return await tx.get(GpuSession, found.session_id)


async def forget_expired(tx: AsyncSession, *, now: datetime) -> int:
    """Forget every user's keys older than a day (a user who never sends another key would
    keep theirs otherwise); how many."""
    forgotten = await tx.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < now - KEY_LIFETIME)
    )
    return int(forgotten.rowcount)  # type: ignore[attr-defined]


def remember(
    tx: AsyncSession, *, user_id: str, key: str, fingerprint: str, session_id: str, now: datetime
) -> None:
    """Keep the key with the session it made, in the transaction that made it."""
    tx.add(
        IdempotencyKey(
            user_id=user_id,
            key=key,
            fingerprint=fingerprint,
            session_id=session_id,
            created_at=now,
        )
    )
