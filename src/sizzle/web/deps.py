"""Who is signed in, from the session cookie; pages that need someone redirect to sign-in."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request, Response

from sizzle.api.deps import StateDep
from sizzle.db.models import User
from sizzle.errors import Forbidden, SizzleError
from sizzle.security import create_access_token
from sizzle.services import authentication, inbox
from sizzle.state import AppState
from sizzle.web.security import SESSION_COOKIE, check_csrf, set_session_cookie


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
        async with state.db.read() as tx:
            caller = await authentication.authenticate(
                tx,
                token,
                secret=state.settings.resolved_secret_key,
                now=state.clock.now(),
                keys_allowed=False,
            )
            # the header's bell, read with the user: every page a signed-in user sees shows it
            request.state.unread_notifications = await inbox.unread_count(tx, caller.user.id)
    except SizzleError:
        return None  # expired, forged, revoked, an API key, or the account gone or suspended
    return caller.user


def give_session_cookie(
    request: Request, response: Response, state: AppState, user_id: str
) -> None:
    """Sign this browser in: the session cookie is a sign-in token, like the API's."""
    lifetime = timedelta(minutes=state.settings.access_token_minutes)
    token = create_access_token(
        user_id, secret=state.settings.resolved_secret_key, now=state.clock.now(), lifetime=lifetime
    )
    set_session_cookie(request, response, token, max_age=int(lifetime.total_seconds()))


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
