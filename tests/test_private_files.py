"""What Sizzle keeps on disk is its owner's alone (the SQLite file and its -wal and -shm, the
home folder), and what the engine logs and raises never carries a statement's values."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import sizzle.settings
from sizzle.db.database import Database
from sizzle.db.migrate import upgrade
from sizzle.settings import Settings

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_sqlite_file_and_its_wal_and_shm_are_the_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "home" / "sizzle.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(db)
        async with db.transaction() as tx:
            await tx.execute(text("UPDATE ledger_accounts SET balance = balance"))
            # the WAL files exist while a connection is open
            files = [path, path.with_name("sizzle.db-wal"), path.with_name("sizzle.db-shm")]
            assert {file: mode(file) for file in files} == dict.fromkeys(files, 0o600)
    finally:
        await db.dispose()
    assert mode(path.parent) == 0o700


async def test_files_an_older_sizzle_left_open_are_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "sizzle.db"
    wal = path.with_name("sizzle.db-wal")
    for file in (path, wal):
        file.write_bytes(b"")
        file.chmod(0o644)
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.dispose()
    assert (mode(path), mode(wal)) == (0o600, 0o600)


def test_the_home_folder_is_made_for_its_owner_alone(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    assert Settings(home=home).resolved_secret_key
    assert mode(home) == 0o700
    assert mode(home / "secret_key") == 0o600


def test_the_default_home_an_older_sizzle_made_is_narrowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = tmp_path / ".sizzle"
    default.mkdir(mode=0o755)
    default.chmod(0o755)
    monkeypatch.setattr(sizzle.settings, "DEFAULT_HOME", default)
    Settings(home=default).make_home()
    assert mode(default) == 0o700
    # a folder the operator chose is theirs to set as they like
    chosen = tmp_path / "chosen"
    chosen.mkdir(mode=0o755)
    chosen.chmod(0o755)
    Settings(home=chosen).make_home()
    assert mode(chosen) == 0o755


async def test_a_failed_statement_does_not_show_its_values(db: Database) -> None:
    with pytest.raises(DBAPIError) as failed:
        async with db.transaction() as tx:
            await tx.execute(text("SELECT no_such_column FROM users WHERE email = :e"), {"e": HASH})
    assert "no_such_column" in str(failed.value)  # the statement is still named
    assert HASH not in str(failed.value)
