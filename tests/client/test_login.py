"""`sizzle login` and `logout`: where the key is kept, and which server it goes to."""

from __future__ import annotations

import json
import socket
import stat
from typing import Any

from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.models import User
from sizzle.legal import library
from sizzle.state import AppState
from tests.client.support import Sizzle, error_line, logged_in, parsed
from tests.helpers import PASSWORD, log_in, make_user, serve_here

CLI_SCOPES = ["sessions:read", "sessions:write", "billing:read", "inference"]


async def test_login_stores_a_working_key_readable_by_the_owner_only(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(state.db, now=clock.now())
    result = await sizzle("login", "--email", user.email, "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert f"Logged in to {sizzle.url} as {user.email}." in result.stdout

    assert stat.S_IMODE(sizzle.credentials_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(sizzle.config_dir.stat().st_mode) == 0o700
    assert [p.name for p in sizzle.config_dir.iterdir()] == ["credentials.json"]  # no temp left
    stored = sizzle.stored()
    assert stored["api_url"] == sizzle.url
    assert stored["email"] == user.email
    assert stored["key"].startswith("sz_live_")
    assert PASSWORD not in sizzle.credentials_file.read_text()

    # The key works on its own, and is the one the API lists, with every scope a key may have.
    me = await sizzle.api.get("/api/v1/auth/me", headers={"X-API-Key": stored["key"]})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == user.email
    keys = await sizzle.api.get("/api/v1/keys", headers=await log_in(sizzle.api, email=user.email))
    (key,) = keys.json()
    assert key["id"] == stored["key_id"]
    assert stored["key"].startswith(key["prefix"]) and key["prefix"] == stored["key_prefix"]
    assert key["name"] == f"sizzle CLI on {socket.gethostname()}"[:100]
    assert sorted(key["scopes"]) == sorted(CLI_SCOPES)


async def test_login_asks_for_email_and_a_hidden_password(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(state.db, now=clock.now())
    result = await sizzle("login", "--json", input=f"{user.email}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Email:" in result.stderr and "Password:" in result.stderr  # prompts off stdout
    assert PASSWORD not in result.output  # the typed password is not echoed
    # CliRunner echoes the typed email onto stdout, as a terminal would show it; the rest is
    # the one JSON document.
    typed, document = result.stdout.split("\n", 2)[:2], result.stdout.split("\n", 2)[2]
    assert typed == [f" {user.email}", " "]
    assert json.loads(document)["user"]["email"] == user.email
    assert sizzle.stored()["email"] == user.email


async def test_login_json_prints_the_user_and_the_key_but_not_its_secret(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(state.db, now=clock.now())
    result = await sizzle(
        "login", "--email", user.email, "--password-stdin", "--json", input=PASSWORD + "\n"
    )
    body = parsed(result)
    stored = sizzle.stored()
    assert body["api_url"] == sizzle.url
    assert body["credentials_file"] == str(sizzle.credentials_file)
    assert body["user"]["email"] == user.email
    assert body["key"]["id"] == stored["key_id"]
    assert "key" not in body["key"]
    assert stored["key"] not in result.output


async def test_a_wrong_password_is_refused_and_nothing_is_stored(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(state.db, now=clock.now())
    result = await sizzle(
        "login", "--email", user.email, "--password-stdin", input="not the password\n"
    )
    assert result.exit_code == 1
    assert error_line(result).startswith("error: That email and password do not match an account.")
    assert result.stdout == ""
    assert not sizzle.credentials_file.exists()


async def test_login_with_a_key_checks_it_and_stores_it(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(state.db, now=clock.now(), credit_usd="3")
    token = await log_in(sizzle.api, email=user.email)
    made = await sizzle.api.post(
        "/api/v1/keys", json={"name": "mine", "scopes": ["billing:read"]}, headers=token
    )
    key = made.json()["key"]

    result = await sizzle("login", "--key", key, "--json")
    assert parsed(result)["user"]["email"] == user.email
    assert parsed(result)["key"] is None  # no key was made
    assert sizzle.stored()["key"] == key
    assert stat.S_IMODE(sizzle.credentials_file.stat().st_mode) == 0o600

    balance = await sizzle("balance", "--json")
    assert parsed(balance)["balance_usd"] == "3.00"
    # The key has billing:read only: the server's refusal comes through as it is.
    ps = await sizzle("ps")
    assert ps.exit_code == 1
    assert error_line(ps) == "error: this API key lacks the scope sessions:read"


async def test_login_with_a_bad_key_stores_nothing(sizzle: Sizzle) -> None:
    result = await sizzle("login", "--key", "sz_live_" + "x" * 40)
    assert result.exit_code == 1
    assert error_line(result) == "error: this API key is not valid"
    assert not sizzle.credentials_file.exists()


async def test_login_usage_mistakes_exit_2(sizzle: Sizzle) -> None:
    result = await sizzle("login", "--key", "sz_live_abc", "--email", "a@example.com")
    assert result.exit_code == 2
    assert "either --key or an email and password" in result.output
    result = await sizzle("login", "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 2
    assert "needs --email too" in result.output
    result = await sizzle("login", "--email", "a@example.com", "--password-stdin", input="\n")
    assert result.exit_code == 2
    assert "stdin held no password" in result.output
    assert not sizzle.credentials_file.exists()


async def test_logout_forgets_the_key_and_says_it_still_works(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    account = await logged_in(sizzle, clock, state)
    result = await sizzle("logout")
    assert result.exit_code == 0, result.output
    assert not sizzle.credentials_file.exists()
    assert "still works until revoked" in result.stderr
    # Forgotten here only: the server still takes it.
    me = await sizzle.api.get("/api/v1/auth/me", headers=account.headers)
    assert me.status_code == 200

    after = await sizzle("ps")
    assert after.exit_code == 1
    assert error_line(after).startswith("error: not logged in: run `sizzle login`")

    again = await sizzle("logout", "--json")
    assert parsed(again) == {
        "logged_out": False,
        "api_url": None,
        "key_id": None,
        "key_prefix": None,
    }


async def test_sizzle_api_key_overrides_the_stored_key(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    await logged_in(sizzle, clock, state)
    result = await sizzle("balance", SIZZLE_API_KEY="sz_live_" + "y" * 40)
    assert result.exit_code == 1
    assert error_line(result) == "error: this API key is not valid"
    assert "hint: run `sizzle login` again" in result.stderr

    other = await make_user(state.db, now=clock.now(), credit_usd="7")
    token = await log_in(sizzle.api, email=other.email)
    made = await sizzle.api.post(
        "/api/v1/keys", json={"name": "env", "scopes": ["billing:read"]}, headers=token
    )
    result = await sizzle("balance", "--json", SIZZLE_API_KEY=made.json()["key"])
    assert parsed(result)["balance_usd"] == "7.00"


async def test_a_stored_key_is_never_sent_to_another_server(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    await logged_in(sizzle, clock, state)
    asked: list[str] = []

    async def other_server(scope: dict[str, Any], receive: Any, send: Any) -> None:
        asked.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async with serve_here(other_server) as other:
        result = await sizzle("balance", SIZZLE_API_URL=other)
    assert result.exit_code == 1
    assert error_line(result) == (
        f"error: logged in to {sizzle.url}, not {other}: run `sizzle login` with "
        "SIZZLE_API_URL set to it, or set SIZZLE_API_KEY"
    )
    assert asked == []  # not even asked

    # Without SIZZLE_API_URL, the server logged in to is used.
    result = await sizzle("balance", "--json", SIZZLE_API_URL=None)
    assert parsed(result)["free_minutes"] == 5


async def test_a_bad_api_url_is_refused(sizzle: Sizzle) -> None:
    result = await sizzle("tiers", SIZZLE_API_URL="localhost:8000")
    assert result.exit_code == 1
    assert error_line(result) == (
        "error: SIZZLE_API_URL must be an http:// or https:// URL, not 'localhost:8000'"
    )


async def test_login_to_a_server_that_is_not_there_names_it(sizzle: Sizzle) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening
        result = await sizzle(
            "login",
            "--email",
            "a@example.com",
            "--password-stdin",
            input=PASSWORD + "\n",
            SIZZLE_API_URL=closed,
        )
    assert result.exit_code == 1
    assert error_line(result).startswith(f"error: cannot reach the Sizzle API at {closed} (")
    assert not sizzle.credentials_file.exists()


async def test_login_after_the_terms_changed_shows_them_and_accepts_when_told(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(state.db, now=clock.now(), accepted_terms=False)
    result = await sizzle("login", "--email", user.email, input=f"{PASSWORD}\ny\n")
    assert result.exit_code == 0, result.output
    assert "Sizzle's terms changed since you accepted them" in result.stderr
    assert f"Terms of Service: {state.settings.public_base_url}/legal/terms" in result.stderr
    assert "Accepted. Thank you." in result.stderr
    async with state.db.read() as tx:
        accepted = await tx.scalar(select(User.terms_version).where(User.id == user.id))
    assert accepted == library(state.settings.legal_dir).acceptance_version()


async def test_login_from_a_script_only_says_the_terms_changed(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(state.db, now=clock.now(), accepted_terms=False)
    result = await sizzle("login", "--email", user.email, "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output  # the key works all the same
    assert "Not accepted yet" in result.stderr
    async with state.db.read() as tx:
        assert await tx.scalar(select(User.terms_version).where(User.id == user.id)) is None
