"""Settings: defaults, the generated secret key, refused placeholders."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from sizzle.settings import Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SIZZLE_"):
            monkeypatch.delenv(name)


def test_secret_key_is_generated_once_and_kept_beside_the_database(tmp_path: Path) -> None:
    first = Settings(home=tmp_path).resolved_secret_key
    again = Settings(home=tmp_path).resolved_secret_key
    assert first == again
    assert len(first) >= 32
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_each_home_gets_its_own_secret_key(tmp_path: Path) -> None:
    one = Settings(home=tmp_path / "a").resolved_secret_key
    two = Settings(home=tmp_path / "b").resolved_secret_key
    assert one != two


def test_a_given_secret_key_is_used_as_is(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, secret_key="a-real-secret-of-some-length")
    assert settings.resolved_secret_key == "a-real-secret-of-some-length"
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize("placeholder", ["changeme", "secret", "short"])
def test_placeholder_secret_keys_are_refused(placeholder: str) -> None:
    with pytest.raises(ValidationError):
        Settings(secret_key=placeholder)


def test_default_database_is_a_sqlite_file_in_the_home_folder(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.is_default_database
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'sizzle.db'}"


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://sizzle:pw@db:5432/sizzle", "postgresql+asyncpg://sizzle:pw@db:5432/sizzle"),
        ("postgres://db/sizzle", "postgresql+asyncpg://db/sizzle"),
        ("postgresql+asyncpg://db/sizzle", "postgresql+asyncpg://db/sizzle"),
        ("sqlite:////srv/sizzle.db", "sqlite+aiosqlite:////srv/sizzle.db"),
    ],
)
def test_plain_database_urls_get_the_async_driver(given: str, used: str) -> None:
    assert Settings(database_url=given).resolved_database_url == used


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIZZLE_PROVIDERS", "demo, vast")
    monkeypatch.setenv("SIZZLE_METER_INTERVAL_SECONDS", "2.5")
    monkeypatch.setenv("SIZZLE_FREE_MINUTES", "9")
    settings = Settings()
    assert settings.enabled_providers == ["demo", "vast"]
    assert settings.meter_interval_seconds == 2.5
    assert settings.free_minutes == 9


def test_issue_defaults() -> None:
    settings = Settings()
    assert settings.meter_interval_seconds == 15
    assert settings.free_minutes == 5
    assert settings.abandon_minutes == 10
    assert settings.enabled_providers == ["demo"]
