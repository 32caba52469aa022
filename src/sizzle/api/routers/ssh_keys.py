"""SSH keys: a user's own public keys, put on their sessions' machines next to Sizzle's, so that
they can log in themselves. Signed in with a password only: a key that may log in to a GPU is
not something an API key may add."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from sizzle.api.deps import CurrentUser, IdPath, PagingDep, StateDep
from sizzle.api.openapi import error_responses
from sizzle.api.schemas import CleanStr, Page
from sizzle.db.models import UserSshKey
from sizzle.domain.ssh_keys import KEY_TYPES
from sizzle.services import ssh_keys

router = APIRouter(prefix="/api/v1/ssh-keys", tags=["ssh-keys"])


class SshKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: CleanStr = Field(min_length=1, max_length=100, description="Like “laptop”.")
    # Checked by the service, which says what is wrong in words (NUL and length included).
    public_key: str = Field(
        max_length=65_536,
        description="One OpenSSH public key line, of one of: " + ", ".join(KEY_TYPES) + ".",
    )


class SshKeyOut(BaseModel):
    id: str
    name: str
    public_key: str = Field(description="The key in OpenSSH form, as it goes on the machine.")
    fingerprint: str = Field(description="SHA256:…, as `ssh-keygen -l -f key.pub` prints it.")
    created_at: datetime


def ssh_key_out(row: UserSshKey) -> SshKeyOut:
    return SshKeyOut(
        id=row.id,
        name=row.name,
        public_key=row.public_key,
        fingerprint=row.fingerprint,
        created_at=row.created_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SshKeyOut,
    responses=error_responses(409),
)
async def add(body: SshKeyIn, user: CurrentUser, state: StateDep) -> SshKeyOut:
    """Add a key: it goes on the machines of the sessions launched from now on."""
    async with state.db.transaction() as tx:
        row = await ssh_keys.add_key(
            tx, user, name=body.name, public_key=body.public_key, now=state.clock.now()
        )
    return ssh_key_out(row)


@router.get("", response_model=Page[SshKeyOut])
async def list_keys(user: CurrentUser, state: StateDep, paging: PagingDep) -> Page[SshKeyOut]:
    """My SSH keys, newest first."""
    async with state.db.read() as tx:
        rows = await ssh_keys.list_keys(tx, user.id)
    page = rows[paging.offset : paging.offset + paging.limit]
    return Page(items=[ssh_key_out(row) for row in page], total=len(rows))


@router.delete("/{ssh_key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove(ssh_key_id: IdPath, user: CurrentUser, state: StateDep) -> Response:
    """Remove a key: machines launched from now on do not get it (running ones keep it until
    their session ends)."""
    async with state.db.transaction() as tx:
        await ssh_keys.remove_key(tx, ssh_key_id, user_id=user.id, now=state.clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
