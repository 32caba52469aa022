"""Who a request speaks for: the one check that every way in goes through.

A sign-in token (the API's bearer token, or the browser's session cookie), an API key, and the
workspace API's requests all come here. The account is read every time, in the caller's
transaction, so a suspension, a password change (which ends older sign-ins) or a revoked key
takes effect on the very next request, whatever the route.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import GpuSession, User
from sizzle.errors import Forbidden, Unauthorized
from sizzle.security import decode_access_token
from sizzle.services import accounts, api_keys

# Every API key may read whose it is (GET /api/v1/auth/me), whatever its scopes.
IDENTITY = "identity"


@dataclass(frozen=True)
class Caller:
    """An authenticated, active user, and the API key they came with, if any (whose scopes
    bound what the request may do)."""

    user: User
    key_id: str | None = None
    scopes: frozenset[str] = frozenset()
    key_use_due: bool = False  # the key's last use is older than its resolution
    # the session asked for with `authenticate(with_session=...)`, if it is the user's
    session: GpuSession | None = None

    def require(self, needed: Sequence[str]) -> None:
        """Refuse a key without every scope `needed`; a sign-in token may do all its user may."""
        if self.key_id is None:
            return
        if not needed:
            raise Forbidden(
                "API keys cannot do this; sign in with your password instead",
                code="api_key_not_allowed",
            )
        missing = [scope for scope in needed if scope not in self.scopes and scope != IDENTITY]
        if missing:
            raise Forbidden(
                f"this API key lacks the scope {', '.join(missing)}", code="insufficient_scope"
            )


async def authenticate(
    tx: AsyncSession,
    credential: str,
    *,
    secret: str,
    now: datetime,
    keys_allowed: bool = True,
    with_session: str | None = None,
) -> Caller:
    """The active user behind a sign-in token or (unless `keys_allowed` is False, as for the
    session cookie) an API key. 401 for a bad, expired or revoked credential or a deleted
    account; 403 for a suspended one. Reads only: `tx` may be a read transaction.

    `with_session`: a session id the handler reads next: read with the user in the same
    statement and handed back as `Caller.session` if it is theirs (else None)."""
    if api_keys.looks_like_key(credential):
        if not keys_allowed:
            raise Unauthorized("an API key cannot sign in a browser", code="invalid_token")
        holder = await api_keys.check_key(tx, credential, now=now)
        user, session = await _user_and_session(tx, holder.user_id, with_session)
        return Caller(
            accounts.ensure_active(user),
            key_id=holder.key_id,
            scopes=holder.scopes,
            key_use_due=holder.use_due,
            session=session,
        )
    token = decode_access_token(credential, secret=secret, now=now)
    user, session = await _user_and_session(tx, token.user_id, with_session)
    return Caller(accounts.ensure_active(user, issued_at=token.issued_at), session=session)


MAX_ID = 64  # no id Sizzle makes is longer
# Built once: building a statement and its cache key costs more than running it on SQLite.
_USER_AND_SESSION = (
    select(User, GpuSession)
    .outerjoin(
        GpuSession,
        and_(GpuSession.id == bindparam("session_id"), GpuSession.user_id == User.id),
    )
    .where(User.id == bindparam("user_id"))
)


async def _user_and_session(
    tx: AsyncSession, user_id: str, session_id: str | None
) -> tuple[User | None, GpuSession | None]:
    """The user's row, and their session `session_id` if there is one and it is theirs, in one
    statement (each statement costs a round trip, or four hops to aiosqlite's thread)."""
    if session_id is None or len(session_id) > MAX_ID or "\x00" in session_id:
        # no such session (the path's validation refuses such an id; PostgreSQL cannot hold
        # a NUL)
        return await tx.get(User, user_id), None
    found = (
        await tx.execute(_USER_AND_SESSION, {"session_id": session_id, "user_id": user_id})
    ).first()
    return (found[0], found[1]) if found is not None else (None, None)
