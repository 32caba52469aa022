"""A small synchronous client for Sizzle's public API (/api/v1), on httpx.

Every method returns the API's JSON as it came; an error answer raises `ApiError` with the
server's own message, and a server that cannot be reached raises `Unreachable` naming the URL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx

from sizzle import __version__
from sizzle.client.errors import ApiError, ClientError, Unreachable

# What `sizzle login` asks for: everything a key may do.
CLI_SCOPES = ("sessions:read", "sessions:write", "billing:read", "inference")
PAGE_LIMIT = 500  # the API's largest page
SESSION_ID_LENGTH = 32  # a session id is 32 hex digits

CREATE_TRIES = 3  # asking for a session again is safe: the same Idempotency-Key each time

JSON = dict[str, Any]


@dataclass(frozen=True)
class SignIn:
    token: str
    terms_must_accept: bool  # the legal documents changed since the user accepted them


class SizzleClient:
    def __init__(
        self,
        api_url: str,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        headers = {"User-Agent": f"sizzle-cli/{__version__}", "Accept": "application/json"}
        if key:
            headers["X-API-Key"] = key
        self._http = httpx.Client(
            base_url=self.api_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> SizzleClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: JSON | None = None,
        params: dict[str, str | int] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One call; the decoded JSON answer (None for 204)."""
        headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise Unreachable(
                f"the Sizzle API at {self.api_url} did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.RequestError as exc:  # connection, protocol, decoding, redirects
            reason = str(exc) or type(exc).__name__
            raise Unreachable(
                f"cannot reach the Sizzle API at {self.api_url} ({reason}); is the server "
                "running, and is SIZZLE_API_URL right?"
            ) from exc
        if response.status_code == httpx.codes.NO_CONTENT:
            return None
        if response.is_error or response.is_redirect:
            raise _api_error(response, self.api_url)
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(
                f"{self.api_url}{path} did not answer with JSON: is SIZZLE_API_URL a Sizzle server?"
            ) from exc

    # --- auth and keys ---------------------------------------------------------------------

    def sign_in(self, email: str, password: str) -> SignIn:
        """A short-lived sign-in token, from an email and password."""
        body = self.request(
            "POST", "/api/v1/auth/login", json={"email": email, "password": password}
        )
        return SignIn(str(body["access_token"]), bool(body.get("terms_must_accept")))

    def terms(self, token: str | None = None) -> JSON:
        """The legal documents in force, and what the user accepted (`must_accept`)."""
        result: JSON = self.request("GET", "/api/v1/auth/terms", token=token)
        return result

    def accept_terms(self, token: str, version: str) -> JSON:
        """Accept the legal documents of `version`; needs a sign-in token (a person accepts)."""
        result: JSON = self.request(
            "POST", "/api/v1/auth/terms", json={"version": version}, token=token
        )
        return result

    def create_key(self, token: str, *, name: str, scopes: tuple[str, ...] = CLI_SCOPES) -> JSON:
        """A new API key (its secret is in `key`, this once); needs a sign-in token."""
        result: JSON = self.request(
            "POST", "/api/v1/keys", json={"name": name, "scopes": list(scopes)}, token=token
        )
        return result

    def me(self) -> JSON:
        result: JSON = self.request("GET", "/api/v1/auth/me")
        return result

    # --- catalog ---------------------------------------------------------------------------

    def tiers(self) -> list[JSON]:
        result: list[JSON] = self.request("GET", "/api/v1/tiers")
        return result

    def availability(self) -> list[JSON]:
        result: list[JSON] = self.request("GET", "/api/v1/availability")
        return result

    def models(
        self,
        *,
        search: str | None = None,
        category: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JSON:
        """A page of the model library: `{"items": [...], "total": n}`."""
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if search:
            params["search"] = search
        if category:
            params["category"] = category
        result: JSON = self.request("GET", "/api/v1/models", params=params)
        return result

    # --- sessions --------------------------------------------------------------------------

    def create_session(
        self,
        *,
        tier: str,
        model: str | None = None,
        max_minutes: int | None = None,
        spend_cap: str | None = None,
        idle_minutes: int | Literal["never", "default"] = "default",
    ) -> JSON:
        """A new session. Sent with an Idempotency-Key, so that when the server does not answer
        in time it is asked again (up to CREATE_TRIES times) without renting a second GPU.
        `idle_minutes` "default" leaves the server's idle limit."""
        body = _launch_body(tier, model, max_minutes, spend_cap)
        if idle_minutes != "default":
            body["idle_minutes"] = None if idle_minutes == "never" else idle_minutes
        once = {"Idempotency-Key": uuid.uuid4().hex}
        for _early_try in range(CREATE_TRIES - 1):
            try:
                made: JSON = self.request("POST", "/api/v1/sessions", json=body, headers=once)
            except Unreachable:
                continue
            return made
        result: JSON = self.request("POST", "/api/v1/sessions", json=body, headers=once)
        return result

    # --- launches waiting for a GPU --------------------------------------------------------

    def queue_launch(
        self,
        *,
        tier: str,
        model: str | None = None,
        max_minutes: int | None = None,
        spend_cap: str | None = None,
    ) -> JSON:
        """POST /launch-queue: launch when a GPU of the tier is free; the queued launch."""
        result: JSON = self.request(
            "POST", "/api/v1/launch-queue", json=_launch_body(tier, model, max_minutes, spend_cap)
        )
        return result

    def queued_launches(self, *, status: str | None = None) -> list[JSON]:
        """My queued launches (only those in `status`, if given), newest first, every page."""
        found: list[JSON] = []
        while True:
            params: dict[str, str | int] = {"limit": PAGE_LIMIT, "offset": len(found)}
            if status:
                params["status"] = status
            page = self.request("GET", "/api/v1/launch-queue", params=params)
            found.extend(page["items"])
            if not page["items"] or len(found) >= int(page["total"]):
                return found

    def cancel_queued(self, queue_id: str) -> None:
        """DELETE /launch-queue/{id}: stop waiting."""
        self.request("DELETE", f"/api/v1/launch-queue/{_segment(queue_id)}")

    def session(self, session_id: str) -> JSON:
        result: JSON = self.request("GET", f"/api/v1/sessions/{_segment(session_id)}")
        return result

    def sessions_page(self, *, limit: int | None = None, offset: int = 0) -> JSON:
        params: dict[str, str | int] = {"limit": limit or PAGE_LIMIT, "offset": offset}
        result: JSON = self.request("GET", "/api/v1/sessions", params=params)
        return result

    def all_sessions(self) -> Iterator[JSON]:
        """Every session of mine, newest first, page after page."""
        offset = 0
        while True:
            page = self.sessions_page(offset=offset)
            items: list[JSON] = page["items"]
            yield from items
            offset += len(items)
            if not items or offset >= int(page["total"]):
                return

    def session_id(self, given: str) -> str:
        """The id of my one session whose id is `given` or starts with it: a whole id as it is
        (no listing), a prefix looked up among all my sessions. None or several is an error
        that names them."""
        given = given.strip().lower()
        if not given:
            raise ClientError("give a session id, or the first few characters of one")
        if len(given) == SESSION_ID_LENGTH:
            return given
        matches = [s for s in self.all_sessions() if str(s["id"]).startswith(given)]
        if len(matches) == 1:
            return str(matches[0]["id"])
        if not matches:
            raise ClientError(
                f"no session of yours has an id starting with {given!r}",
                hint="`sizzle ps --all` lists your sessions",
            )
        listed = "; ".join(
            f"{s['id']} ({s['status']}, {s['tier']}, {str(s['created_at'])[:16].replace('T', ' ')})"
            for s in matches[:10]
        )
        more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
        raise ClientError(
            f"{len(matches)} sessions have an id starting with {given!r}: {listed}{more}",
            hint="give more characters of the id",
        )

    def act(self, session_id: str, action: str) -> JSON:
        """POST /sessions/{id}/{action}: start, pause, resume or stop; the session after."""
        result: JSON = self.request("POST", f"/api/v1/sessions/{_segment(session_id)}/{action}")
        return result

    def session_ssh(self, session_id: str) -> JSON:
        """GET /sessions/{id}/ssh: how to log in to the session's machine with my own key."""
        result: JSON = self.request("GET", f"/api/v1/sessions/{_segment(session_id)}/ssh")
        return result

    # --- billing ---------------------------------------------------------------------------

    def balance(self) -> JSON:
        result: JSON = self.request("GET", "/api/v1/billing/balance")
        return result


def _launch_body(
    tier: str, model: str | None, max_minutes: int | None, spend_cap: str | None
) -> JSON:
    """What a launch asks for (a session, or a queued launch)."""
    body: JSON = {"tier": tier}
    if model is not None:
        body["model"] = model
    if max_minutes is not None:
        body["max_minutes"] = max_minutes
    if spend_cap is not None:
        body["spend_cap_usd"] = spend_cap  # as typed: the server reads every usual style
    return body


def _segment(value: str) -> str:
    """A path segment as given, with anything that would change the path escaped."""
    return quote(value, safe="")


def _api_error(response: httpx.Response, api_url: str) -> ApiError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        where = f"{api_url}{response.request.url.path}"
        return ApiError(
            response.status_code,
            "http_error",
            f"HTTP {response.status_code} {response.reason_phrase} from {where}",
        )
    return ApiError(response.status_code, code, message or f"HTTP {response.status_code}")
