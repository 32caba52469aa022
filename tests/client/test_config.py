"""Where the client keeps its key, and how it picks the server and the key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sizzle.client.config import (
    DEFAULT_API_URL,
    Credentials,
    config_dir,
    delete_credentials,
    load_credentials,
    resolve,
    save_credentials,
)
from sizzle.client.errors import ClientError


def test_the_config_dir_follows_xdg_unless_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_dir({}) == tmp_path / "xdg" / "sizzle"
    assert config_dir({"SIZZLE_CONFIG_DIR": str(tmp_path / "here")}) == tmp_path / "here"


def test_saving_replaces_the_file_with_a_fresh_0600_one(tmp_path: Path) -> None:
    env = {"SIZZLE_CONFIG_DIR": str(tmp_path / "cfg")}
    path = save_credentials(Credentials("http://a.test", "sz_live_one"), env)
    path.chmod(0o644)  # loosened by hand
    save_credentials(Credentials("http://a.test", "sz_live_two"), env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_credentials(env) == Credentials("http://a.test", "sz_live_two")
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]


def test_a_damaged_file_is_reported_and_logout_removes_it(tmp_path: Path) -> None:
    env = {"SIZZLE_CONFIG_DIR": str(tmp_path)}
    (tmp_path / "credentials.json").write_text("{not json")
    with pytest.raises(ClientError, match="is damaged; delete it"):
        resolve(env)
    assert delete_credentials(env) is True
    assert delete_credentials(env) is False
    assert resolve(env).key is None


def test_which_server_and_which_key(tmp_path: Path) -> None:
    env = {"SIZZLE_CONFIG_DIR": str(tmp_path)}
    assert resolve(env).api_url == DEFAULT_API_URL
    save_credentials(Credentials("https://gpu.example.com/", "sz_live_stored"), env)
    # The stored server, with its key; a trailing slash does not make it another server.
    assert (resolve(env).api_url, resolve(env).key) == ("https://gpu.example.com", "sz_live_stored")
    same = {**env, "SIZZLE_API_URL": "https://gpu.example.com"}
    assert resolve(same).key == "sz_live_stored"
    # Another server: no key, and why.
    other = resolve({**env, "SIZZLE_API_URL": "https://other.example.com"})
    assert (other.api_url, other.key) == ("https://other.example.com", None)
    assert "logged in to https://gpu.example.com/, not https://other.example.com" in (
        other.missing_key_hint
    )
    # SIZZLE_API_KEY wins everywhere.
    forced = resolve({**env, "SIZZLE_API_URL": "https://other.example.com", "SIZZLE_API_KEY": "k"})
    assert forced.key == "k"
