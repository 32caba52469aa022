"""Typed dependencies for the routers: the app state, a transaction, the caller (a sign-in
token or a scoped API key) and the current user."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from pydantic import AfterValidator
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.api.schemas import refuse_nul
from sizzle.db.models import User
from sizzle.errors import Forbidden, Unauthorized
from sizzle.security import decode_access_token
from sizzle.services import accounts, api_keys
from sizzle.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.sizzle
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_tx(state: StateDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed when the handler returns without error."""
    async with state.db.transaction() as tx:
        yield tx


# scope="function": commit before the response leaves, so a 2xx means the write is durable.
TxDep = Annotated[AsyncSession, Depends(get_tx, scope="function")]

_bearer = HTTPBearer(auto_error=False)

# Every API key may read whose it is (GET /api/v1/auth/me), whatever its scopes.
IDENTITY = "identity"


@dataclass(frozen=True)
class Principal:
    """Who a request speaks for: a sign-in token (everything its user may do) or an API key
    (only its scopes)."""

    user_id: str
    key_id: str | None = None
    scopes: frozenset[str] = frozenset()
    issued_at: int | None = None  # a sign-in token's; None for an API key

    def require(self, needed: Sequence[str]) -> None:
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


def client_ip(request: Request) -> str:
    """The caller's address (behind a proxy, run uvicorn with --proxy-headers so that this is
    the client's, not the proxy's)."""
    return request.client.host if request.client else "unknown"


def public_base_url(request: Request, state: AppState) -> str:
    """Where browsers reach Sizzle, for links in mails and Stripe's return pages:
    `SIZZLE_PUBLIC_URL`, else the address this request came to."""
    return (state.settings.public_url or str(request.base_url)).rstrip("/")


async def limit_by_address(request: Request, state: StateDep) -> None:
    """Every API request counts against its IP address's limit."""
    await state.rate_limiter.from_address(client_ip(request))


async def get_principal(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_api_key: Annotated[str | None, Header(max_length=200, include_in_schema=False)] = None,
) -> Principal:
    """From `X-API-Key: sz_live_...`, or `Authorization: Bearer` with an API key or a sign-in
    token. A sign-in token is checked without the database (a hot path saves a round trip);
    an API key is looked up, so a revoked one is refused at once."""
    bearer = (
        credentials.credentials
        if credentials is not None and credentials.scheme.lower() == "bearer"
        else None
    )
    presented = x_api_key or bearer
    if not presented:
        raise Unauthorized(
            "sign in first: send Authorization: Bearer <token> or X-API-Key: <key>",
            code="not_signed_in",
        )
    if api_keys.looks_like_key(presented):
        async with state.db.transaction() as tx:
            holder = await api_keys.authenticate(tx, presented, now=state.clock.now())
        principal = Principal(holder.user_id, key_id=holder.key_id, scopes=holder.scopes)
    else:
        claims = decode_access_token(
            presented, secret=state.settings.resolved_secret_key, now=state.clock.now()
        )
        principal = Principal(claims.user_id, issued_at=claims.issued_at)
    await state.rate_limiter.api_call(user_id=principal.user_id, key_id=principal.key_id)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_user_id(security_scopes: SecurityScopes, principal: PrincipalDep) -> str:
    """The user id, once the caller may do what the endpoint needs, without reading the user:
    for a handler that checks the account in its own transaction."""
    principal.require(security_scopes.scopes)
    return principal.user_id


# The current user is read in its own short transaction. Put CurrentUser before TxDep in a
# handler's parameters: on SQLite a second transaction waits for the first to end.
async def get_current_user(
    security_scopes: SecurityScopes, state: StateDep, principal: PrincipalDep
) -> User:
    principal.require(security_scopes.scopes)
    async with state.db.transaction() as tx:
        return await accounts.get_active_user(tx, principal.user_id, issued_at=principal.issued_at)


# Signed in with a password (a sign-in token); API keys are refused.
CurrentUser = Annotated[User, Depends(get_current_user)]
# Also open to API keys with the scope named.
AnyKeyUser = Annotated[User, Security(get_current_user, scopes=[IDENTITY])]
SessionsReader = Annotated[User, Security(get_current_user, scopes=["sessions:read"])]
SessionsWriter = Annotated[User, Security(get_current_user, scopes=["sessions:write"])]
BillingReader = Annotated[User, Security(get_current_user, scopes=["billing:read"])]
InferenceUserId = Annotated[str, Security(get_user_id, scopes=["inference"])]


async def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("operators only")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]


MAX_OFFSET = 1_000_000_000


class Paging:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=500, description="At most 500.")] = 50,
        # Bounded so that a huge offset is a 422, not an integer overflow in the database.
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="At most 10^9.")] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset


PagingDep = Annotated[Paging, Depends()]

# The id of a thing in a path: no longer than any id Sizzle makes, and never a NUL (which
# PostgreSQL text cannot hold): a 422, not a 500.
IdPath = Annotated[str, Path(max_length=64), AfterValidator(refuse_nul)]
