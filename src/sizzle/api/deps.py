"""Typed dependencies for the routers: the app state, a transaction, the caller (a sign-in
token or a scoped API key) and the current user.

Every dependency here is a coroutine: FastAPI runs a plain `def` in its thread pool, a hop
to another thread and back on every request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from pydantic import AfterValidator
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.api.schemas import refuse_nul
from sizzle.db.models import GpuSession, User
from sizzle.errors import Forbidden, NotFound, Unauthorized
from sizzle.services import api_keys, authentication
from sizzle.services.authentication import IDENTITY, Caller
from sizzle.state import AppState


def app_state(request: Request) -> AppState:
    """The app's state. The hot dependencies call this rather than depend on `StateDep`:
    FastAPI walks every declared sub-dependency on every request, cached or not."""
    state: AppState = request.app.state.sizzle
    return state


async def get_state(request: Request) -> AppState:
    return app_state(request)


StateDep = Annotated[AppState, Depends(get_state)]


async def get_tx(state: StateDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed when the handler returns without error."""
    async with state.db.transaction() as tx:
        yield tx


# scope="function": commit before the response leaves, so a 2xx means the write is durable.
TxDep = Annotated[AsyncSession, Depends(get_tx, scope="function")]


async def get_read_tx(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's read transaction: a reading guard (`SessionsReader`) checks the caller in
    it and the handler reads its objects in it, one transaction in all. On SQLite it does not
    take the write lock."""
    async with app_state(request).db.read() as tx:
        yield tx


# scope="function": the transaction ends when the handler returns, before the body is sent.
ReadTxDep = Annotated[AsyncSession, Depends(get_read_tx, scope="function")]

_bearer = HTTPBearer(auto_error=False)


def client_ip(request: Request) -> str:
    """The caller's address (behind a proxy, run uvicorn with --proxy-headers so that this is
    the client's, not the proxy's)."""
    return request.client.host if request.client else "unknown"


async def limit_by_address(request: Request) -> None:
    """Every API request counts against its IP address's limit."""
    await app_state(request).rate_limiter.from_address(client_ip(request))


async def get_credential(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_api_key: Annotated[str | None, Header(max_length=200, include_in_schema=False)] = None,
) -> str:
    """What the caller presented: `X-API-Key: sz_live_...`, or `Authorization: Bearer` with an
    API key or a sign-in token; 401 when nothing was."""
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
    return presented


CredentialDep = Annotated[str, Depends(get_credential)]


async def _authenticate(
    state: AppState, tx: AsyncSession, credential: str, *, with_session: str | None = None
) -> Caller:
    return await authentication.authenticate(
        tx,
        credential,
        secret=state.settings.resolved_secret_key,
        now=state.clock.now(),
        with_session=with_session,
    )


async def _admit(state: AppState, caller: Caller, needed: Sequence[str]) -> User:
    """The caller's user, once a key has the scopes `needed` and the caller is within limits."""
    caller.require(needed)
    if caller.key_id is not None and caller.key_use_due:
        # at most once a minute per key, so its own short write
        async with state.db.transaction() as tx:
            await api_keys.record_use(tx, caller.key_id, now=state.clock.now())
    await state.rate_limiter.api_call(user_id=caller.user.id, key_id=caller.key_id)
    return caller.user


async def get_current_user(
    security_scopes: SecurityScopes, state: StateDep, credential: CredentialDep
) -> User:
    """The caller, checked (revocation and suspension included) in a short read transaction of
    its own that ends before the handler runs: for a handler that writes, waits on a provider
    or on Stripe, or streams."""
    async with state.db.read() as tx:
        caller = await _authenticate(state, tx, credential)
    return await _admit(state, caller, security_scopes.scopes)


async def get_reading_user(
    security_scopes: SecurityScopes, state: StateDep, credential: CredentialDep, tx: ReadTxDep
) -> User:
    """The caller, checked (revocation and suspension included) in the request's read
    transaction, which the handler then reads in too (`ReadTxDep`)."""
    return await read_caller(state, tx, credential, security_scopes.scopes)


async def read_caller(
    state: AppState, tx: AsyncSession, credential: str, scopes: Sequence[str]
) -> User:
    """The caller behind `credential`, checked in `tx` (revocation and suspension included),
    once a key has the `scopes` and the caller is within limits: for a handler that opens its
    own read transaction (one dependency fewer for FastAPI to solve on a hot route)."""
    return await _admit(state, await _authenticate(state, tx, credential), scopes)


@dataclass(frozen=True)
class OwnSession:
    """The caller and their session named by the path."""

    user: User
    session: GpuSession


async def get_own_session(
    request: Request,
    security_scopes: SecurityScopes,
    credential: CredentialDep,
    session_id: Annotated[str, Path(), AfterValidator(refuse_nul)],
) -> OwnSession:
    """For a route that only reads the session its path names (`session_id`): the caller,
    checked (revocation and suspension included), and that session, read together in one
    statement in one short read transaction; 404 when it is not theirs.

    One flat dependency, where a reading guard plus the request's transaction were three:
    FastAPI's solving of each costs more than the read on PostgreSQL."""
    state = app_state(request)
    async with state.db.read() as tx:
        caller = await _authenticate(state, tx, credential, with_session=session_id)
    caller.require(security_scopes.scopes)  # 403 before 404: a key learns nothing more
    if caller.session is None:  # none, or another user's: as unknown as a missing one
        raise NotFound("session not found")
    return OwnSession(await _admit(state, caller, security_scopes.scopes), caller.session)


async def get_user_id(user: Annotated[User, Depends(get_current_user)]) -> str:
    """The caller's user id, for a handler that reads what it needs in its own transaction."""
    return user.id


# Signed in with a password (a sign-in token); API keys are refused.
CurrentUser = Annotated[User, Depends(get_current_user)]
# Also open to API keys with the scope named.
AnyKeyUser = Annotated[User, Security(get_current_user, scopes=[IDENTITY])]
# For a handler that only reads the database: it reads in the same transaction (ReadTxDep).
SessionsReader = Annotated[User, Security(get_reading_user, scopes=["sessions:read"])]
# The caller's session that the path names (`session_id`), for a route that only reads it.
OwnSessionReader = Annotated[OwnSession, Security(get_own_session, scopes=["sessions:read"])]
# For a handler that reads and then waits on a provider: no transaction held open meanwhile.
SessionsReaderNoTx = Annotated[User, Security(get_current_user, scopes=["sessions:read"])]
SessionsWriter = Annotated[User, Security(get_current_user, scopes=["sessions:write"])]
BillingReader = Annotated[User, Security(get_current_user, scopes=["billing:read"])]
InferenceUserId = Annotated[str, Security(get_user_id, scopes=["inference"])]


async def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("operators only")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]


MAX_OFFSET = 1_000_000_000


@dataclass(frozen=True)
class Paging:
    limit: int = 50
    offset: int = 0


async def get_paging(
    limit: Annotated[int, Query(ge=1, le=500, description="At most 500.")] = 50,
    # Bounded so that a huge offset is a 422, not an integer overflow in the database.
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="At most 10^9.")] = 0,
) -> Paging:
    """The page a list asks for (a coroutine: a class dependency would run in the thread pool)."""
    return Paging(limit=limit, offset=offset)


PagingDep = Annotated[Paging, Depends(get_paging)]

# The id of a thing in a path: no longer than any id Sizzle makes, and never a NUL (which
# PostgreSQL text cannot hold): a 422, not a 500.
IdPath = Annotated[str, Path(max_length=64), AfterValidator(refuse_nul)]
