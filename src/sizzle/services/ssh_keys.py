"""A user's own SSH keys: added on the account page, put on their sessions' instances next to
Sizzle's key at each launch, and what the user then types to log in.

A key reaches only instances launched after it was added, and removing one here does not take
it off a machine already running (its session's end does). So each launch records which of the
user's keys its instance got (`InstanceKey.user_keys`): "Connect" is offered only where one
did, and names those keys.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.database import Database
from sizzle.db.models import GpuSession, InstanceKey, User, UserSshKey
from sizzle.domain.lifecycle import SessionStatus
from sizzle.domain.ssh_keys import Connect, connect_command, parse_public_key
from sizzle.errors import Conflict, NotFound, ValidationFailed
from sizzle.providers.base import Provider, SupportsSsh
from sizzle.services import audit
from sizzle.services.sessions import get_session
from sizzle.services.workspace import Workspace

MAX_KEYS_PER_USER = 10

NOT_SSH = "This session's GPU cannot be logged in to over SSH: only rented cloud machines can."
NOT_ACTIVE = "Start (or resume) the session to log in to its machine."
NO_KEY = (
    "This machine has none of your SSH keys: add one on your account page, and it is put on "
    "the machines you launch after that."
)
NOT_YET = "The machine's SSH address is not known yet; try again in a moment."


@dataclass(frozen=True)
class KeyOnMachine:
    """One of the user's keys the instance was booted with (name None: removed since)."""

    fingerprint: str
    name: str | None


@dataclass(frozen=True)
class SshAccess:
    """How the user logs in to a session's machine, and with which of their keys."""

    connect: Connect
    keys: list[KeyOnMachine]


async def add_key(
    tx: AsyncSession, user: User, *, name: str, public_key: str, now: datetime
) -> UserSshKey:
    """Check and keep one of the user's keys; 422 for anything but one usable public key, 409
    for a key they added already, 422 past the cap."""
    name = name.strip()
    if not name:
        raise ValidationFailed("give the key a name, like the computer it is on", code="bad_name")
    parsed = parse_public_key(public_key)
    await tx.get(User, user.id, with_for_update=True)  # one add at a time per user: the cap holds
    mine = await list_keys(tx, user.id)
    if any(key.fingerprint == parsed.fingerprint for key in mine):
        twin = next(key for key in mine if key.fingerprint == parsed.fingerprint)
        raise Conflict(f"you added this key already, as “{twin.name}”", code="duplicate_ssh_key")
    if len(mine) >= MAX_KEYS_PER_USER:
        raise ValidationFailed(
            f"at most {MAX_KEYS_PER_USER} SSH keys; remove one first", code="too_many_ssh_keys"
        )
    row = UserSshKey(
        id=uuid.uuid4().hex,
        user_id=user.id,
        name=name,
        public_key=parsed.line,
        fingerprint=parsed.fingerprint,
        created_at=now,
    )
    try:
        async with tx.begin_nested():
            tx.add(row)
    except IntegrityError:  # the same key, added at the same moment elsewhere
        raise Conflict("you added this key already", code="duplicate_ssh_key") from None
    audit.record(
        tx,
        "ssh_key.added",
        actor=f"user:{user.id}",
        now=now,
        user_id=user.id,
        target=f"ssh_key:{row.id}",
        detail=f"{name}: {parsed.fingerprint}",
    )
    return row


async def list_keys(tx: AsyncSession, user_id: str) -> list[UserSshKey]:
    """The user's keys, newest first."""
    return list(
        await tx.scalars(
            select(UserSshKey)
            .where(UserSshKey.user_id == user_id)
            .order_by(UserSshKey.created_at.desc(), UserSshKey.id)
        )
    )


async def count_keys(tx: AsyncSession, user_id: str) -> int:
    found = await tx.scalar(select(func.count()).where(UserSshKey.user_id == user_id))
    return int(found or 0)


async def remove_key(tx: AsyncSession, key_id: str, *, user_id: str, now: datetime) -> None:
    """Remove one of the user's keys; another user's key is a 404."""
    row = await tx.get(UserSshKey, key_id)
    if row is None or row.user_id != user_id:
        raise NotFound("SSH key not found")
    await tx.delete(row)
    audit.record(
        tx,
        "ssh_key.removed",
        actor=f"user:{user_id}",
        now=now,
        user_id=user_id,
        target=f"ssh_key:{row.id}",
        detail=f"{row.name}: {row.fingerprint}",
    )


async def keys_for_boot(tx: AsyncSession, session: GpuSession) -> tuple[str, ...]:
    """The public keys of the session's owner, for its next instance (added next to ours), and
    noted on the session's key row as what that instance got. Call after the row exists."""
    keys = await list_keys(tx, session.user_id)
    await tx.execute(
        update(InstanceKey)
        .where(InstanceKey.session_id == session.id)
        .values(user_keys=" ".join(key.fingerprint for key in keys) or None)
    )
    return tuple(key.public_key for key in keys)


async def page_offer(
    tx: AsyncSession, providers: dict[str, Provider], session: GpuSession
) -> str | None:
    """What the live page offers about SSH for the session: "connect" (its machine has one of
    the user's keys), "too_late" (the user has keys, added after this machine started), or
    None (nothing: a newcomer without keys, a demo or node session, one not active)."""
    active = session.status == SessionStatus.ACTIVE.value
    if not active or not isinstance(providers.get(session.provider or ""), SupportsSsh):
        return None
    noted = await tx.scalar(
        select(InstanceKey.user_keys).where(InstanceKey.session_id == session.id)
    )
    if noted:
        return "connect"
    return "too_late" if await count_keys(tx, session.user_id) else None


async def connect_info(
    db: Database,
    providers: dict[str, Provider],
    workspace: Workspace,
    session_id: str,
    *,
    user_id: str,
) -> SshAccess:
    """How the user logs in to their session's machine now: 404 for a session not theirs, 409
    saying why not otherwise. The address comes from the workspace (remembered for a minute),
    asked outside any transaction."""
    async with db.read() as tx:
        session, provider, keys = await _machine_access(tx, providers, session_id, user_id=user_id)
    endpoint = await workspace.ssh_endpoint(provider, session)
    if endpoint is None:
        raise Conflict(NOT_YET, code="ssh_not_ready")
    connect = connect_command(endpoint.host, endpoint.port, endpoint.username)
    if connect is None:
        raise Conflict(
            "the provider gave an SSH address that does not look right; try again later",
            code="ssh_address_unusable",
        )
    return SshAccess(connect=connect, keys=keys)


async def _machine_access(
    tx: AsyncSession, providers: dict[str, Provider], session_id: str, *, user_id: str
) -> tuple[GpuSession, SupportsSsh, list[KeyOnMachine]]:
    session = await get_session(tx, session_id, user_id=user_id)
    provider = providers.get(session.provider or "")
    if SessionStatus(session.status).is_terminal():
        raise Conflict("This session has ended.", code="session_ended")
    if not isinstance(provider, SupportsSsh) or not session.instance_id:
        raise Conflict(NOT_SSH, code="ssh_not_supported")
    if session.status != SessionStatus.ACTIVE.value:
        raise Conflict(NOT_ACTIVE, code="session_not_active")
    noted = await tx.scalar(
        select(InstanceKey.user_keys).where(InstanceKey.session_id == session.id)
    )
    fingerprints = (noted or "").split()
    if not fingerprints:
        raise Conflict(NO_KEY, code="no_ssh_key_on_machine")
    names = {key.fingerprint: key.name for key in await list_keys(tx, user_id)}
    return session, provider, [KeyOnMachine(f, names.get(f)) for f in fingerprints]
