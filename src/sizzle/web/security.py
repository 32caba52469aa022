"""Browser sessions and CSRF.

The session cookie holds the same signed, expiring token the API hands out, HttpOnly and
SameSite=Lax, and Secure whenever the browser will keep a Secure cookie (https, or the
loopback address a person runs Sizzle on at home). CSRF uses a double submit: a random
`sizzle_csrf` cookie, repeated in every form (or in the X-CSRF-Token header of a script's
request); a state-changing request whose two copies differ is refused.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request, Response

from sizzle.errors import Forbidden, ValidationFailed

SESSION_COOKIE = "sizzle_session"
CSRF_COOKIE = "sizzle_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class CsrfRefused(Forbidden):
    code = "csrf_failed"


def cookie_secure(request: Request) -> bool:
    """Secure, unless the page came over plain http to a host other than this machine (where
    a browser would drop a Secure cookie and nobody could sign in)."""
    return request.url.scheme == "https" or (request.url.hostname or "") in LOOPBACK_HOSTS


def csrf_token(request: Request) -> str:
    """This browser's CSRF token: the cookie's, or a new one that the response will set."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and 20 <= len(existing) <= 100:
        return existing
    fresh: str | None = getattr(request.state, "new_csrf", None)
    if fresh is None:
        fresh = secrets.token_urlsafe(32)
        request.state.new_csrf = fresh
    return fresh


def remember_csrf(request: Request, response: Response) -> None:
    """Set the CSRF cookie when this request made the token."""
    fresh: str | None = getattr(request.state, "new_csrf", None)
    if fresh:
        response.set_cookie(
            CSRF_COOKIE,
            fresh,
            httponly=True,
            samesite="strict",
            secure=cookie_secure(request),
            path="/",
        )


async def check_csrf(request: Request) -> None:
    """Refuse a state-changing request whose token does not match its cookie; then one whose
    form has a NUL in any field (PostgreSQL text cannot hold one): every page form passes
    here, so no handler meets one."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    form = None
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()  # kept on the request: the handler's fields reuse it
        value = form.get(CSRF_FIELD)
        sent = sent or (value if isinstance(value, str) else "")
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        raise CsrfRefused(
            "this form has expired or did not come from Sizzle; reload the page and try again"
        )
    if form is not None and any(
        "\x00" in text
        for name, value in form.multi_items()
        for text in (name, value if isinstance(value, str) else value.filename or "")
    ):
        raise ValidationFailed("a form field holds a NUL character", code="nul_in_form")


async def refuse_nul_in_query(request: Request) -> None:
    """A page's query with a NUL in it (`%00`) is bad input, a 422, before any handler passes
    it to the database (PostgreSQL text cannot hold one)."""
    if "\x00" in request.url.query or "%00" in request.url.query:
        raise ValidationFailed("the address holds a NUL character", code="nul_in_query")


def set_session_cookie(request: Request, response: Response, token: str, *, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
        path="/",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="lax", secure=cookie_secure(request), path="/"
    )
