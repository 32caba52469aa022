"""A key pair per session, made by Sizzle: the instance is reached with it, and only with it.

The private key is kept sealed: AES-GCM under a key derived from the secret key (HKDF-SHA256
with a label of its own, so it is never a key anything else derives), a fresh 96-bit nonce per
seal, and the session id as associated data, so a sealed key copied onto another session's row
does not open. It is never logged, never in a repr, never sent to a client, and its row is
deleted when the session ends (and with the session).

The same row pins the instance's SSH host key on first connect (`DatabaseHostKeys`).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import datetime

import asyncssh
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.database import Database
from sizzle.db.models import InstanceKey
from sizzle.errors import KeyUnreadable, NotFound

KEY_ALGORITHM = "ssh-ed25519"
_SEAL_INFO = b"sizzle instance ssh private keys v1"
_SEAL_PREFIX = "v1:"
_NONCE_BYTES = 12


@dataclass(frozen=True)
class SessionKey:
    """A session's key pair: the public half in OpenSSH form, the private half as an SSHKey."""

    session_id: str
    public_key: str
    private_key: asyncssh.SSHKey = field(repr=False, compare=False)


def _sealing_key(secret: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO)
    return hkdf.derive(secret.encode())


def seal_private_key(key: asyncssh.SSHKey, *, session_id: str, secret: str) -> str:
    """The private key, encrypted and bound to its session: text fit for a column."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    plain = key.export_private_key("openssh")
    sealed = AESGCM(_sealing_key(secret)).encrypt(nonce, plain, session_id.encode())
    return _SEAL_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal_private_key(sealed: str, *, session_id: str, secret: str) -> asyncssh.SSHKey:
    """The private key sealed for `session_id`; KeyUnreadable if it does not open."""
    if not sealed.startswith(_SEAL_PREFIX):
        raise KeyUnreadable("the session's SSH key is in an unknown format")
    try:
        blob = base64.urlsafe_b64decode(sealed[len(_SEAL_PREFIX) :])
        nonce, body = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
        plain = AESGCM(_sealing_key(secret)).decrypt(nonce, body, session_id.encode())
    except (InvalidTag, ValueError) as exc:
        raise KeyUnreadable(
            "the session's SSH key does not open: was the secret key changed?"
        ) from exc
    return asyncssh.import_private_key(plain)


def new_key_pair(session_id: str) -> SessionKey:
    """A fresh ed25519 key pair, its public half commented `sizzle-<session id>`."""
    key = asyncssh.generate_private_key(KEY_ALGORITHM, comment=f"sizzle-{session_id}")
    public = key.export_public_key("openssh").decode().strip()
    return SessionKey(session_id=session_id, public_key=public, private_key=key)


async def session_key(
    tx: AsyncSession, session_id: str, *, secret: str, now: datetime
) -> SessionKey:
    """The session's key pair: made and stored (sealed) the first time, read back after."""
    row = await tx.get(InstanceKey, session_id)
    if row is None:
        made = new_key_pair(session_id)
        sealed = seal_private_key(made.private_key, session_id=session_id, secret=secret)
        tx.add(
            InstanceKey(
                session_id=session_id,
                public_key=made.public_key,
                sealed_private_key=sealed,
                host_key=None,
                created_at=now,
            )
        )
        await tx.flush()
        return made
    private = unseal_private_key(row.sealed_private_key, session_id=session_id, secret=secret)
    return SessionKey(session_id=session_id, public_key=row.public_key, private_key=private)


async def public_key(tx: AsyncSession, session_id: str) -> str | None:
    """The session's public key in OpenSSH form, if it has one (no unsealing)."""
    found: str | None = await tx.scalar(
        select(InstanceKey.public_key).where(InstanceKey.session_id == session_id)
    )
    return found


async def forget_session_key(tx: AsyncSession, session_id: str) -> None:
    """Delete the session's key pair and pinned host key: done when the session ends."""
    await tx.execute(delete(InstanceKey).where(InstanceKey.session_id == session_id))


async def unpin_host_key(tx: AsyncSession, session_id: str) -> None:
    """Forget the pinned host key: the session moved to a new instance (a failover), whose
    first connect pins its own."""
    await tx.execute(
        update(InstanceKey).where(InstanceKey.session_id == session_id).values(host_key=None)
    )


async def pinned_host_key(tx: AsyncSession, session_id: str) -> str | None:
    """The host key pinned for the session's instance, or None before its first connect."""
    found: str | None = await tx.scalar(
        select(InstanceKey.host_key).where(InstanceKey.session_id == session_id)
    )
    return found


async def pin_host_key(tx: AsyncSession, session_id: str, host_key: str) -> str:
    """Pin `host_key` unless one is pinned already; the key pinned now (the first one wins)."""
    await tx.execute(
        update(InstanceKey)
        .where(InstanceKey.session_id == session_id, InstanceKey.host_key.is_(None))
        .values(host_key=host_key)
    )
    pinned = await pinned_host_key(tx, session_id)
    if pinned is None:
        raise NotFound("this session has no SSH key", code="instance_key_not_found")
    return pinned


class DatabaseHostKeys:
    """The tunnel pool's host key store, kept on the session's `instance_keys` row."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def pinned(self, session_id: str) -> str | None:
        async with self._db.read() as tx:
            return await pinned_host_key(tx, session_id)

    async def pin(self, session_id: str, host_key: str) -> str:
        async with self._db.transaction() as tx:
            return await pin_host_key(tx, session_id, host_key)
