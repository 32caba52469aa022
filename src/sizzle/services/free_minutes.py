"""Sign-up free minutes: granted once an address is confirmed, and once per address, ever.

An address that has had them is kept as an HMAC of it, keyed from the secret key, in its own
table (`FreeMinutesClaim`). That row has no link to the account, and it outlives the account's
deletion for this one purpose: deleting an account and signing up again with the same address
does not give the minutes again. The privacy page says so.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import FreeMinutesClaim, User
from sizzle.services import audit, ledger


def _key(secret: str) -> bytes:
    # A key of its own, derived from the secret key: a digest here can never pass for a
    # token or a link's signature, nor the other way round.
    return hmac.new(secret.encode(), b"sizzle free minutes addresses", hashlib.sha256).digest()


def address_digest(email: str, *, secret: str) -> str:
    """The keyed hash of an address (as accounts key it: normalized, lower case)."""
    return hmac.new(_key(secret), email.strip().lower().encode(), hashlib.sha256).hexdigest()


def grant_key(user_id: str) -> str:
    """The ledger key of the account's free minutes: one grant per account, whatever runs."""
    return f"signup:{user_id}:free_minutes"


async def _claim(tx: AsyncSession, digest: str, *, now: datetime) -> bool:
    """Mark the address as having had its minutes; False if it had them before (a second
    confirmation at the same moment loses on the primary key)."""
    known = select(FreeMinutesClaim.address_digest).where(FreeMinutesClaim.address_digest == digest)
    if await tx.scalar(known):
        return False
    try:
        async with tx.begin_nested():
            tx.add(FreeMinutesClaim(address_digest=digest, claimed_at=now))
            await tx.flush()
    except IntegrityError:
        return False
    return True


async def grant_once(
    tx: AsyncSession, user: User, minutes: int, *, secret: str, now: datetime, actor: str
) -> int:
    """Give the user their sign-up free minutes, unless their address had them before (this
    account or a deleted one); how many were given. Callers grant when the address is
    proven (a confirmation or reset link) or vouched for (an operator making the account)."""
    if minutes <= 0 or await ledger.entry_exists(tx, grant_key(user.id)):
        return 0
    if not await _claim(tx, address_digest(user.email, secret=secret), now=now):
        audit.record(
            tx,
            "account.free_minutes_refused",
            actor=actor,
            now=now,
            user_id=user.id,
            detail="this address had its free minutes before",
        )
        return 0
    await ledger.grant_free_minutes(tx, user.id, minutes, key=grant_key(user.id), now=now)
    return minutes


async def remember_address(tx: AsyncSession, user: User, *, secret: str, now: datetime) -> None:
    """Before an account's address is erased: keep its digest if the account had the minutes
    (accounts from before the digests were kept have the grant and no digest)."""
    if await ledger.entry_exists(tx, grant_key(user.id)):
        await _claim(tx, address_digest(user.email, secret=secret), now=now)
