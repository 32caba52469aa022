"""The API keys page: make a key with the scopes it needs (shown once, with a copy button),
see when each was last used, revoke one."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sizzle.api.deps import StateDep
from sizzle.db.models import User
from sizzle.errors import SizzleError, ValidationFailed
from sizzle.services import api_keys
from sizzle.state import AppState
from sizzle.web.deps import CsrfChecked, SignedIn
from sizzle.web.render import render

router = APIRouter(include_in_schema=False)

EXPIRY_CHOICES = {"never": None, "30": 30, "90": 90, "365": 365}


async def _page(
    request: Request,
    state: AppState,
    user: User,
    *,
    new_key: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    async with state.db.read() as tx:
        keys = await api_keys.list_keys(tx, user.id)
    return render(
        request,
        "account/keys.html",
        user=user,
        keys=keys,
        scopes=api_keys.SCOPES,
        prefix=api_keys.KEY_PREFIX,
        new_key=new_key,
        error=error,
        now=state.clock.now(),
        status_code=status_code,
    )


@router.get("/account/keys", response_class=HTMLResponse)
async def keys_page(request: Request, state: StateDep, user: SignedIn) -> Response:
    return await _page(request, state, user)


@router.post("/account/keys", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def create_key(
    request: Request,
    state: StateDep,
    user: SignedIn,
    name: Annotated[str, Form(max_length=100)],
    scopes: Annotated[list[str] | None, Form(max_length=10)] = None,
    expires: Annotated[str, Form(max_length=8)] = "never",
) -> Response:
    """Make the key and show it, this once, on the page that answers the form."""
    now = state.clock.now()
    try:
        if not name.strip() or "\x00" in name:
            raise ValidationFailed("give the key a name, like the machine it is for")
        if expires not in EXPIRY_CHOICES:
            raise ValidationFailed("choose when the key expires from the list")
        days = EXPIRY_CHOICES[expires]
        expires_at = (
            None
            if days is None
            else datetime.combine((now + timedelta(days=days)).date(), time(), tzinfo=UTC)
        )
        async with state.db.transaction() as tx:
            _, key = await api_keys.create_key(
                tx, user, name=name.strip(), scopes=scopes or [], expires_at=expires_at, now=now
            )
    except SizzleError as exc:
        return await _page(request, state, user, error=exc.message, status_code=exc.status_code)
    return await _page(request, state, user, new_key=key)


@router.post("/account/keys/{key_id}/revoke", dependencies=[CsrfChecked])
async def revoke_key(
    state: StateDep, user: SignedIn, key_id: Annotated[str, Path(max_length=64)]
) -> Response:
    async with state.db.transaction() as tx:
        await api_keys.revoke_key(tx, key_id, user_id=user.id, now=state.clock.now())
    return RedirectResponse("/account/keys", status_code=303)
