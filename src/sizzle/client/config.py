"""Where the CLI keeps its API key, and which server it talks to.

The key lives in one JSON file in the user's config dir (`SIZZLE_CONFIG_DIR`, else
`$XDG_CONFIG_HOME/sizzle` or `~/.config/sizzle`), created with mode 0600. `SIZZLE_API_URL`
picks the server (else the one logged in to, else the local default); `SIZZLE_API_KEY`
overrides the stored key. A stored key is only ever sent to the server it was made for.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import typer

from sizzle.client.errors import ClientError

DEFAULT_API_URL = "http://127.0.0.1:8000"
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class Credentials:
    api_url: str
    key: str
    key_id: str | None = None
    key_prefix: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Target:
    """The server to talk to and the key to present (None: not logged in to it)."""

    api_url: str
    key: str | None
    # Why there is no key, when there is none: the hint the commands give.
    missing_key_hint: str = ""


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    override = env.get("SIZZLE_CONFIG_DIR")
    if override:
        return Path(override)
    # click's get_app_dir honours XDG_CONFIG_HOME on Linux, and the platform's place elsewhere.
    return Path(typer.get_app_dir("sizzle"))


def credentials_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / CREDENTIALS_FILE


def normalize_url(url: str, *, source: str) -> str:
    """`http(s)://host[:port][/prefix]` without a trailing slash; anything else is refused."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"{source} must be an http:// or https:// URL, not {url!r}")
    return url


def load_credentials(env: Mapping[str, str] | None = None) -> Credentials | None:
    path = credentials_path(env)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
        return Credentials(
            api_url=str(data["api_url"]),
            key=str(data["key"]),
            key_id=data.get("key_id"),
            key_prefix=data.get("key_prefix"),
            email=data.get("email"),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ClientError(
            f"{path} is damaged; delete it (`sizzle logout`) and log in again"
        ) from exc


def save_credentials(credentials: Credentials, env: Mapping[str, str] | None = None) -> Path:
    """Write the file atomically, readable by its owner only: a temporary file made with mode
    0600 (never wider, whatever the umask), then renamed over the old one."""
    folder = config_dir(env)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / CREDENTIALS_FILE
    temporary = folder / f".{CREDENTIALS_FILE}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), 0o600)  # exactly 0600, whatever the umask took away
            json.dump(asdict(credentials), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def delete_credentials(env: Mapping[str, str] | None = None) -> bool:
    """Forget the stored key (a damaged file too); whether there was one."""
    try:
        credentials_path(env).unlink()
    except FileNotFoundError:
        return False
    return True


def api_url_from(env: Mapping[str, str], stored: Credentials | None) -> str:
    if env.get("SIZZLE_API_URL"):
        return normalize_url(env["SIZZLE_API_URL"], source="SIZZLE_API_URL")
    if stored is not None:
        return normalize_url(stored.api_url, source=f"api_url in {CREDENTIALS_FILE}")
    return DEFAULT_API_URL


def resolve(env: Mapping[str, str] | None = None) -> Target:
    """The server and key for a command, from the environment and the stored login."""
    env = os.environ if env is None else env
    stored = load_credentials(env)
    api_url = api_url_from(env, stored)
    if env.get("SIZZLE_API_KEY"):
        return Target(api_url, env["SIZZLE_API_KEY"].strip())
    if stored is None:
        return Target(
            api_url, None, "not logged in: run `sizzle login` (or set SIZZLE_API_KEY) first"
        )
    if normalize_url(stored.api_url, source="api_url") != api_url:
        return Target(
            api_url,
            None,
            f"logged in to {stored.api_url}, not {api_url}: run `sizzle login` with "
            "SIZZLE_API_URL set to it, or set SIZZLE_API_KEY",
        )
    return Target(api_url, stored.key)
