"""Typed dependencies for the routers: the app state, a transaction, the current user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import User
from sizzle.errors import Forbidden, Unauthorized
from sizzle.security import decode_access_token
from sizzle.services import accounts
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


def get_token_user_id(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The user id a valid token names, without reading the database: for a handler that
    checks the account in its own transaction (and saves a round trip on a hot path)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(
            "sign in first: send Authorization: Bearer <token>", code="not_signed_in"
        )
    return decode_access_token(
        credentials.credentials, secret=state.settings.resolved_secret_key, now=state.clock.now()
    )


TokenUserId = Annotated[str, Depends(get_token_user_id)]


# The current user is read in its own short transaction. Put CurrentUser before TxDep in a
# handler's parameters: on SQLite a second transaction waits for the first to end.
async def get_current_user(state: StateDep, user_id: TokenUserId) -> User:
    async with state.db.transaction() as tx:
        return await accounts.get_active_user(tx, user_id)


CurrentUser = Annotated[User, Depends(get_current_user)]


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
