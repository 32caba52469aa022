"""Typed dependencies for the routers: the app state, a transaction, the caller (a sign-in
token or a scoped API key) and the current user.

Every dependency here is a coroutine: FastAPI runs a plain `def` in its thread pool, a hop
to another thread and back on every request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from pydantic import AfterValidator
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.api.schemas import refuse_nul
from sizzle.db.models import GpuSession, User
from sizzle.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
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


def client_ip(request: Request) -> str:
    """The caller's address (behind a proxy, run uvicorn with --proxy-headers so that this is
    the client's, not the proxy's)."""
    return request.client.host if request.client else "unknown"


async def limit_by_address(request: Request) -> None:
    """Every API request counts against its IP address's limit."""
    await app_state(request).rate_limiter.from_address(client_ip(request))


MAX_CREDENTIAL = 200  # longer than any key or sign-in token Sizzle makes


class CredentialScheme(SecurityBase):
    """How a caller says who they are: `X-API-Key: sz_live_...`, or `Authorization: Bearer`
    with an API key or a sign-in token. Documented as HTTP bearer (the header an API key also
    fits in). A dependency of this kind reads the headers itself: FastAPI's `HTTPBearer` plus
    a header parameter were two more dependencies to solve on every request."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel()
        self.scheme_name = "HTTPBearer"  # one scheme in the docs, whichever guard names it

    @staticmethod
    def presented(request: Request) -> str:
        """The credential the request carries; 401 when it carries none, or one longer than
        any Sizzle makes (checked before anything reads it)."""
        presented = request.headers.get("x-api-key")
        if not presented:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            presented = value.strip() if scheme.lower() == "bearer" else ""
        if not presented:
            raise Unauthorized(
                "sign in first: send Authorization: Bearer <token> or X-API-Key: <key>",
                code="not_signed_in",
            )
        if len(presented) > MAX_CREDENTIAL:
            raise Unauthorized(
                f"no key or sign-in token is longer than {MAX_CREDENTIAL} characters",
                code="invalid_token",
            )
        return presented


class Credential(CredentialScheme):
    """What the caller presented (401 when nothing)."""

    async def __call__(self, request: Request) -> str:
        return self.presented(request)


get_credential = Credential()
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


class OwnSessionGuard(CredentialScheme):
    """For a route that only reads the session its path names (`session_id`): the caller,
    checked (revocation and suspension included), and that session, read together in one
    statement in one short read transaction; 404 when it is not theirs.

    One dependency, where a reading guard, the credential, the bearer scheme and the request's
    transaction were four: FastAPI's solving of each costs more than the read itself."""

    async def __call__(self, request: Request, security_scopes: SecurityScopes) -> OwnSession:
        credential = self.presented(request)
        session_id: str = request.path_params["session_id"]
        if "\x00" in session_id:  # PostgreSQL text cannot hold one: bad input, not a 500
            raise ValidationFailed("session_id must not contain NUL characters")
        state = app_state(request)
        async with state.db.read() as tx:
            caller = await _authenticate(state, tx, credential, with_session=session_id)
        caller.require(security_scopes.scopes)  # 403 before 404: a key learns nothing more
        if caller.session is None:  # none, or another user's: as unknown as a missing one
            raise NotFound("session not found")
        return OwnSession(await _admit(state, caller, security_scopes.scopes), caller.session)


get_own_session = OwnSessionGuard()


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
