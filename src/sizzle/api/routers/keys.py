"""API keys: make one (shown once), list them, revoke one. Signed in with a password only: a
key cannot make or revoke keys."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from sizzle.api.deps import CurrentUser, IdPath, StateDep
from sizzle.api.schemas import CleanStr, Moment
from sizzle.db.models import ApiKey
from sizzle.services import api_keys

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: CleanStr = Field(min_length=1, max_length=100)
    scopes: list[CleanStr] = Field(
        min_length=1,
        max_length=len(api_keys.SCOPES),
        description="Some of: " + "; ".join(f"`{k}` {v}" for k, v in api_keys.SCOPES.items()),
    )
    expires_at: Moment | None = Field(None, description="Never, if left out.")


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="How the key begins, to tell keys apart: sz_live_<prefix>.")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="To the minute.")
    revoked_at: datetime | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself. It is shown this once: keep it now.")


def key_out(row: ApiKey) -> KeyOut:
    return KeyOut(
        id=row.id,
        name=row.name,
        prefix=f"{api_keys.KEY_PREFIX}{row.prefix}",
        scopes=row.scopes.split(),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NewKeyOut)
async def create(body: KeyIn, user: CurrentUser, state: StateDep) -> NewKeyOut:
    """A new key with the scopes asked for; the key is in the answer, and only there."""
    async with state.db.transaction() as tx:
        row, key = await api_keys.create_key(
            tx,
            user,
            name=body.name,
            scopes=body.scopes,
            expires_at=body.expires_at,
            now=state.clock.now(),
        )
    return NewKeyOut(**key_out(row).model_dump(), key=key)


@router.get("", response_model=list[KeyOut])
async def list_keys(user: CurrentUser, state: StateDep) -> list[KeyOut]:
    """My keys, newest first, revoked ones included (never the keys themselves)."""
    async with state.db.read() as tx:
        return [key_out(row) for row in await api_keys.list_keys(tx, user.id)]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke(key_id: IdPath, user: CurrentUser, state: StateDep) -> Response:
    """Revoke a key: it is refused from the next request on."""
    async with state.db.transaction() as tx:
        await api_keys.revoke_key(tx, key_id, user_id=user.id, now=state.clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
