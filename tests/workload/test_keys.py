"""Session key pairs: made once, sealed at rest (bound to the secret and the session), never
shown in clear, forgotten when the session ends; host keys pinned once."""

from __future__ import annotations

import base64
from typing import Any

import asyncssh
import pytest
from alembic import command
from sqlalchemy import delete, inspect, text

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.migrate import alembic_config
from sizzle.db.models import GpuSession
from sizzle.errors import KeyUnreadable
from sizzle.workload import keys
from tests.conftest import TEST_SECRET

OTHER_SECRET = "another-secret-key-that-is-long-enough"


def seed(key: asyncssh.SSHKey) -> bytes:
    """An ed25519 private key's 32-byte seed (its OpenSSH export has a random check field)."""
    return bytes(key.export_private_key("pkcs8-der"))[-32:]


async def stored_key(db: Database, clock: FakeClock, session_id: str) -> keys.SessionKey:
    """The session's key pair, made (or read) in a transaction of its own."""
    async with db.transaction() as tx:
        return await keys.session_key(tx, session_id, secret=TEST_SECRET, now=clock.now())


def test_a_key_pair_is_ed25519_named_after_its_session() -> None:
    pair = keys.new_key_pair("abc123")
    assert pair.public_key.startswith("ssh-ed25519 ")
    assert pair.public_key.endswith(" sizzle-abc123")


def test_a_sealed_key_opens_with_its_secret_and_session() -> None:
    pair = keys.new_key_pair("s1")
    sealed = keys.seal_private_key(pair.private_key, session_id="s1", secret=TEST_SECRET)
    opened = keys.unseal_private_key(sealed, session_id="s1", secret=TEST_SECRET)
    assert seed(opened) == seed(pair.private_key)


def test_each_seal_takes_a_fresh_nonce() -> None:
    pair = keys.new_key_pair("s1")
    one, two = (
        keys.seal_private_key(pair.private_key, session_id="s1", secret=TEST_SECRET)
        for _ in range(2)
    )
    assert one != two


@pytest.mark.parametrize(("session_id", "secret"), [("s1", OTHER_SECRET), ("s2", TEST_SECRET)])
def test_a_sealed_key_does_not_open_elsewhere(session_id: str, secret: str) -> None:
    pair = keys.new_key_pair("s1")
    sealed = keys.seal_private_key(pair.private_key, session_id="s1", secret=TEST_SECRET)
    with pytest.raises(KeyUnreadable):
        keys.unseal_private_key(sealed, session_id=session_id, secret=secret)


def test_a_tampered_seal_does_not_open() -> None:
    pair = keys.new_key_pair("s1")
    sealed = keys.seal_private_key(pair.private_key, session_id="s1", secret=TEST_SECRET)
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(KeyUnreadable):
        keys.unseal_private_key(flipped, session_id="s1", secret=TEST_SECRET)


def test_the_private_key_is_not_in_the_repr() -> None:
    pair = keys.new_key_pair("s1")
    body = pair.private_key.export_private_key().decode().splitlines()[1]
    assert "private_key" not in repr(pair)
    assert body not in repr(pair)


async def test_a_session_key_is_made_once_then_read_back(
    db: Database, clock: FakeClock, session_id: str
) -> None:
    made = await stored_key(db, clock, session_id)
    async with db.transaction() as tx:
        again = await keys.session_key(tx, session_id, secret=TEST_SECRET, now=clock.now())
        assert await keys.public_key(tx, session_id) == made.public_key
    assert again.public_key == made.public_key
    assert seed(again.private_key) == seed(made.private_key)


async def test_the_stored_row_never_holds_the_private_key_in_clear(
    db: Database, clock: FakeClock, session_id: str
) -> None:
    made = await stored_key(db, clock, session_id)
    async with db.read() as tx:
        row = (await tx.execute(text("SELECT * FROM instance_keys"))).one()
    stored = " ".join(str(value) for value in row)
    secret_seed = seed(made.private_key)
    assert "PRIVATE KEY" not in stored
    for form in (secret_seed.hex(), base64.b64encode(secret_seed).decode()[:40]):
        assert form not in stored


async def test_a_key_under_another_secret_does_not_open(
    db: Database, clock: FakeClock, session_id: str
) -> None:
    await stored_key(db, clock, session_id)
    async with db.read() as tx:
        with pytest.raises(KeyUnreadable):
            await keys.session_key(tx, session_id, secret=OTHER_SECRET, now=clock.now())


async def test_forget_deletes_the_key_pair(db: Database, clock: FakeClock, session_id: str) -> None:
    await stored_key(db, clock, session_id)
    async with db.transaction() as tx:
        await keys.forget_session_key(tx, session_id)
    async with db.read() as tx:
        assert await tx.scalar(text("SELECT count(*) FROM instance_keys")) == 0


async def test_the_key_pair_goes_with_its_session(
    db: Database, clock: FakeClock, session_id: str
) -> None:
    await stored_key(db, clock, session_id)
    async with db.transaction() as tx:
        await tx.execute(delete(GpuSession).where(GpuSession.id == session_id))
    async with db.read() as tx:
        assert await tx.scalar(text("SELECT count(*) FROM instance_keys")) == 0


async def test_the_first_host_key_pinned_stays(
    db: Database, clock: FakeClock, session_id: str
) -> None:
    await stored_key(db, clock, session_id)
    store = keys.DatabaseHostKeys(db)
    assert await store.pinned(session_id) is None
    assert await store.pin(session_id, "ssh-ed25519 AAAAfirst") == "ssh-ed25519 AAAAfirst"
    assert await store.pin(session_id, "ssh-ed25519 AAAAother") == "ssh-ed25519 AAAAfirst"
    assert await store.pinned(session_id) == "ssh-ed25519 AAAAfirst"


async def test_the_migration_makes_the_instance_keys_table(db: Database) -> None:
    async with db.engine.connect() as connection:
        columns = await connection.run_sync(
            lambda sync: {column["name"] for column in inspect(sync).get_columns("instance_keys")}
        )
    assert columns == {
        "session_id",
        "public_key",
        "sealed_private_key",
        "host_key",
        "created_at",
        "user_keys",
    }


async def test_the_migration_goes_down_and_up(db: Database) -> None:
    def _migrate(sync_connection: Any, revision: str, *, down: bool) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_connection
        (command.downgrade if down else command.upgrade)(config, revision)

    def _tables(sync_connection: Any) -> set[str]:
        return set(inspect(sync_connection).get_table_names())

    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(_migrate, "0011", down=True)
            assert "instance_keys" not in await connection.run_sync(_tables)
    finally:
        async with db.engine.begin() as connection:
            await connection.run_sync(_migrate, "head", down=False)
            assert "instance_keys" in await connection.run_sync(_tables)
