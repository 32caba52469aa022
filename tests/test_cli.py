"""`sizzle admin create-user` and `sizzle admin grant-credits`, checked through the API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from sizzle.cli import app
from sizzle.settings import Settings
from tests.conftest import TEST_SECRET
from tests.helpers import PASSWORD, fresh_email, log_in, me, sign_up

Cli = Callable[..., Awaitable[Result]]


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Cli:
    """Run `sizzle …` against the test database, off the event loop (the CLI has its own)."""
    env = {
        "SIZZLE_DATABASE_URL": settings.database_url,
        "SIZZLE_SECRET_KEY": TEST_SECRET,
        "SIZZLE_HOME": str(tmp_path / "cli-home"),
        "COLUMNS": "200",
    }
    runner = CliRunner()

    async def run(*args: str) -> Result:
        return await asyncio.to_thread(runner.invoke, app, list(args), env=env)

    return run


async def test_create_user_makes_a_user_who_can_sign_in(
    cli: Cli, client: httpx.AsyncClient, settings: Settings
) -> None:
    email = fresh_email()
    result = await cli("admin", "create-user", email, "--password", PASSWORD)
    assert result.exit_code == 0, result.output
    body = await me(client, auth=await log_in(client, email=email))
    assert (body["email"], body["plan"], body["is_admin"]) == (email, "free", False)
    assert body["free_minutes"] == settings.free_minutes


async def test_the_first_operator_can_be_made_before_the_first_serve(tmp_path: Path) -> None:
    """On the default SQLite file (no SIZZLE_DATABASE_URL), `admin create-user` makes the
    database as `serve` would, instead of failing on missing tables."""
    env = {"SIZZLE_HOME": str(tmp_path / "fresh"), "SIZZLE_SECRET_KEY": TEST_SECRET}
    made = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["admin", "create-user", fresh_email(), "--admin", "--password", PASSWORD],
        env=env,
    )
    assert made.exit_code == 0, made.output
    assert "as admin" in made.output and (tmp_path / "fresh" / "sizzle.db").exists()


async def test_on_another_database_the_cli_asks_for_an_upgrade_first(tmp_path: Path) -> None:
    env = {
        "SIZZLE_HOME": str(tmp_path / "home"),
        "SIZZLE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
        "SIZZLE_SECRET_KEY": TEST_SECRET,
    }
    refused = await asyncio.to_thread(
        CliRunner().invoke, app, ["admin", "grant-credits", fresh_email(), "5"], env=env
    )
    assert refused.exit_code == 1
    assert "run `sizzle db upgrade` first" in refused.output


async def test_create_user_with_admin_and_plan(cli: Cli, client: httpx.AsyncClient) -> None:
    email = fresh_email()
    result = await cli(
        "admin", "create-user", email, "--password", PASSWORD, "--admin", "--plan", "pro"
    )
    assert result.exit_code == 0, result.output
    body = await me(client, auth=await log_in(client, email=email))
    assert (body["plan"], body["is_admin"]) == ("pro", True)


async def test_set_plan_moves_a_user_and_refuses_an_unknown_plan(
    cli: Cli, client: httpx.AsyncClient
) -> None:
    auth = await sign_up(client)
    email = (await me(client, auth=auth))["email"]
    moved = await cli("admin", "set-plan", email, "enterprise")
    assert moved.exit_code == 0, moved.output
    assert f"{email} is on the enterprise plan" in moved.output
    assert (await me(client, auth=auth))["plan"] == "enterprise"
    refused = await cli("admin", "set-plan", email, "gold")
    assert refused.exit_code == 1
    assert "There is no plan called “gold”" in refused.output


async def test_create_user_with_an_unknown_plan_fails_clearly(cli: Cli) -> None:
    result = await cli(
        "admin", "create-user", fresh_email(), "--password", PASSWORD, "--plan", "gold"
    )
    assert result.exit_code == 1
    assert "unknown plan 'gold'" in result.output


async def test_create_user_with_a_weak_password_fails_clearly(cli: Cli) -> None:
    result = await cli("admin", "create-user", fresh_email(), "--password", "short")
    assert result.exit_code == 1
    assert "at least 8 characters" in result.output


async def test_create_user_with_a_taken_email_fails_clearly(
    cli: Cli, client: httpx.AsyncClient
) -> None:
    email = fresh_email()
    await sign_up(client, email=email)
    result = await cli("admin", "create-user", email, "--password", PASSWORD)
    assert result.exit_code == 1
    assert "already exists" in result.output


async def test_grant_credits_adds_to_the_balance(cli: Cli, client: httpx.AsyncClient) -> None:
    email = fresh_email()
    auth = await sign_up(client, email=email)
    result = await cli("admin", "grant-credits", email, "25.50")
    assert result.exit_code == 0, result.output
    balance = (await client.get("/api/v1/billing/balance", headers=auth)).json()
    assert (balance["balance_usd"], balance["balance_micros"]) == ("25.50", 25_500_000)
    newest = (await client.get("/api/v1/billing/transactions", headers=auth)).json()["items"][0]
    assert (newest["kind"], newest["direction"], newest["amount"]) == (
        "credit_grant",
        "in",
        25_500_000,
    )


async def test_grants_add_up(cli: Cli, client: httpx.AsyncClient) -> None:
    email = fresh_email()
    auth = await sign_up(client, email=email)
    for amount in ("1", "0.000001"):
        assert (await cli("admin", "grant-credits", email, amount)).exit_code == 0
    assert (await me(client, auth=auth))["balance_usd"] == "1.000001"


async def test_grant_credits_to_an_unknown_email_fails_clearly(cli: Cli) -> None:
    result = await cli("admin", "grant-credits", "nobody@example.com", "5")
    assert result.exit_code == 1
    assert "no user with email nobody@example.com" in result.output


@pytest.mark.parametrize(
    "amount", ["abc", "", "1.2.3", "NaN", "Infinity", "1e999999999", "0.0000001"]
)
async def test_grant_credits_refuses_what_is_not_an_amount(
    cli: Cli, client: httpx.AsyncClient, amount: str
) -> None:
    email = fresh_email()
    auth = await sign_up(client, email=email)
    result = await cli("admin", "grant-credits", email, amount)
    assert result.exit_code == 1, result.output
    assert f"{amount!r} is not an amount of dollars" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (await me(client, auth=auth))["balance_usd"] == "0.00"


@pytest.mark.parametrize(
    ("amount", "message"),
    [("0", "positive"), ("-5", "positive"), ("1e30", "at most $1,000,000")],
)
async def test_grant_credits_refuses_zero_negative_and_absurd_amounts(
    cli: Cli, client: httpx.AsyncClient, amount: str, message: str
) -> None:
    email = fresh_email()
    auth = await sign_up(client, email=email)
    result = await cli("admin", "grant-credits", email, "--", amount)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (await me(client, auth=auth))["balance_usd"] == "0.00"
