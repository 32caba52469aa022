"""The account page's SSH keys: paste one in with a name, remove one. The list is drawn by the
account page (`account.profile_page`); a refusal is shown there, with what was typed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from sizzle.api.deps import IdPath, StateDep
from sizzle.errors import SizzleError, ValidationFailed
from sizzle.services import ssh_keys
from sizzle.web.deps import CsrfChecked, SignedIn
from sizzle.web.routes.account import profile_page

router = APIRouter(include_in_schema=False)

AFTER = "/account#ssh-keys"


@router.post("/account/ssh-keys", dependencies=[CsrfChecked])
async def add_key(
    request: Request,
    state: StateDep,
    user: SignedIn,
    name: Annotated[str, Form(max_length=100)],
    public_key: Annotated[str, Form(max_length=65_536)],
) -> Response:
    """Keep the key, then back to the account page (or the page again, saying what is wrong)."""
    try:
        if "\x00" in name:
            raise ValidationFailed("a name has no NUL characters", code="bad_name")
        async with state.db.transaction() as tx:
            await ssh_keys.add_key(
                tx, user, name=name, public_key=public_key, now=state.clock.now()
            )
    except SizzleError as exc:
        typed = {"name": name.replace("\x00", ""), "public_key": public_key.replace("\x00", "")}
        return await profile_page(
            request,
            state,
            user,
            status_code=exc.status_code,
            ssh_error=exc.message,
            ssh_form=typed,
        )
    return RedirectResponse(AFTER, status_code=303)


@router.post("/account/ssh-keys/{key_id}/remove", dependencies=[CsrfChecked])
async def remove_key(state: StateDep, user: SignedIn, key_id: IdPath) -> Response:
    async with state.db.transaction() as tx:
        await ssh_keys.remove_key(tx, key_id, user_id=user.id, now=state.clock.now())
    return RedirectResponse(AFTER, status_code=303)
