"""Error pages a person can act on, in the site's own look; never a stack trace."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from sizzle.state import AppState
from sizzle.web.deps import SignInRequired, optional_user
from sizzle.web.render import render

# Paths that answer JSON whatever happens: the API, the workspace API, probes, docs.
_MACHINE_PREFIXES = ("/api/", "/v1/", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")

_HEADINGS = {
    401: "Please sign in",
    402: "You are out of credit",
    403: "This is not for you",
    404: "We could not find that page",
    409: "That cannot be done right now",
    422: "Something in that request is not right",
    429: "Slow down a little",
    500: "Something went wrong on our side",
    502: "The GPU's server did not answer",
    503: "No GPU is free right now",
}


def wants_page(request: Request) -> bool:
    """Whether an error is answered with a page: not for the API, nor for a page's script,
    which asks for JSON (a .json path, a JSON body) and shows the error's sentence itself."""
    path = request.url.path
    if path.startswith(_MACHINE_PREFIXES) or path.endswith(".json"):
        return False
    return not request.headers.get("content-type", "").startswith("application/json")


def _actions(status: int, code: str) -> list[tuple[str, str]]:
    if status == 402 or code == "insufficient_credit":
        return [("Add credit", "/billing"), ("My sessions", "/sessions")]
    if status == 503:
        return [("Try another tier", "/launch"), ("My sessions", "/sessions")]
    if status == 401:
        return [("Sign in", "/signin")]
    return [("Go to the start page", "/"), ("My sessions", "/sessions")]


async def error_page(request: Request, status: int, code: str, message: str) -> Response:
    state: AppState = request.app.state.sizzle
    try:
        user = await optional_user(request, state)
    except Exception:  # the error may be the database itself
        user = None
    if status >= 500 and status not in (502, 503):
        message = "We have been told and will look into it. Please try again in a moment."
    return render(
        request,
        "error.html",
        user=user,
        status_code=status,
        heading=_HEADINGS.get(status, "That did not work"),
        message=message,
        actions=_actions(status, code),
    )


def sign_in_redirect(exc: SignInRequired) -> RedirectResponse:
    return RedirectResponse(f"/signin?next={quote(exc.next_path, safe='/')}", status_code=303)
