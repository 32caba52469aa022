"""Who is signed in, from the session cookie; pages that need someone redirect to sign-in."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sizzle.api.deps import StateDep
from sizzle.db.models import User
from sizzle.errors import Forbidden, SizzleError
from sizzle.security import decode_access_token
from sizzle.services import accounts
from sizzle.web.security import SESSION_COOKIE, check_csrf


class SignInRequired(Exception):
    """A page needs a signed-in user; the app answers with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


async def optional_user(request: Request, state: StateDep) -> User | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        user_id = decode_access_token(
            token, secret=state.settings.resolved_secret_key, now=state.clock.now()
        )
        async with state.db.read() as tx:
            return await accounts.get_active_user(tx, user_id)
    except SizzleError:
        return None  # expired, forged, or the account is gone or suspended


MaybeUser = Annotated[User | None, Depends(optional_user)]


async def signed_in_user(request: Request, user: MaybeUser) -> User:
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return user


SignedIn = Annotated[User, Depends(signed_in_user)]


async def operator(user: SignedIn) -> User:
    if not user.is_admin:
        raise Forbidden("this page is for Sizzle's operators")
    return user


Operator = Annotated[User, Depends(operator)]

# Put on every route that changes something: the form (or header) must carry the CSRF token.
CsrfChecked = Depends(check_csrf)
