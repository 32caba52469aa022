"""The private path to an instance's model server: the local end of the session's SSH tunnel,
opened with the session's own key. Shared by chat (the workspace) and readiness checks."""

from __future__ import annotations

import asyncssh

from sizzle.clock import Clock
from sizzle.db.database import Database
from sizzle.workload.endpoint import SshEndpoint
from sizzle.workload.keys import SessionKey, session_key
from sizzle.workload.tunnel import Tunnels


async def session_key_pair(
    db: Database, session_id: str, *, secret: str, clock: Clock
) -> SessionKey:
    """The session's SSH key pair (made the first time), unsealed in a short transaction."""
    async with db.transaction() as tx:
        return await session_key(tx, session_id, secret=secret, now=clock.now())


async def session_private_key(
    db: Database, session_id: str, *, secret: str, clock: Clock
) -> asyncssh.SSHKey:
    """The session's SSH private key, unsealed in a short transaction of its own."""
    pair = await session_key_pair(db, session_id, secret=secret, clock=clock)
    return pair.private_key


async def model_server_url(
    db: Database,
    tunnels: Tunnels,
    session_id: str,
    endpoint: SshEndpoint,
    *,
    port: int,
    secret: str,
    clock: Clock,
) -> str:
    """`http://127.0.0.1:<port>` forwarding to the instance's model server: the session's open
    forward as it is, else opened (again) with the session's key."""
    url = tunnels.open_url(session_id, endpoint, port)
    if url is not None:
        return url
    key = await session_private_key(db, session_id, secret=secret, clock=clock)
    return await tunnels.local_url(session_id, endpoint, key, port)
