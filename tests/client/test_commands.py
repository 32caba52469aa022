"""`sizzle tiers`, `models`, `ps`, `stop`, `start`, `balance`: what they print, human and
--json, checked against the API itself."""

from __future__ import annotations

import asyncio
import socket

import pytest
from typer.testing import CliRunner

from sizzle.cli import app as sizzle_app
from sizzle.client import api as client_api
from sizzle.clock import FakeClock
from sizzle.state import AppState
from tests.client.support import Sizzle, error_line, logged_in, parsed
from tests.helpers import launch_ready_session, serve_here


async def test_tiers_json_is_the_api_tiers_and_availability(sizzle: Sizzle) -> None:
    result = await sizzle("tiers", "--json")
    tiers = (await sizzle.api.get("/api/v1/tiers")).json()
    availability = (await sizzle.api.get("/api/v1/availability")).json()
    assert parsed(result) == {"tiers": tiers, "availability": availability}
    assert [t["name"] for t in tiers] == ["starter", "pro", "beast", "ultra"]


async def test_tiers_table(sizzle: Sizzle) -> None:
    result = await sizzle("tiers")  # public: no login needed
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    assert list(rows) == ["starter", "pro", "beast", "ultra"]
    assert "0.15" in rows["starter"] and "9.00" in rows["starter"]
    assert " yes " in rows["starter"]  # the demo provider has capacity
    assert result.stdout.splitlines()[0].split()[:3] == ["TIER", "GPUS", "VRAM"]


async def test_models_json_is_the_api_page_with_the_same_search(sizzle: Sizzle) -> None:
    result = await sizzle("models", "llama", "--limit", "2", "--json")
    expected = await sizzle.api.get("/api/v1/models", params={"search": "llama", "limit": 2})
    page = parsed(result)
    assert page == expected.json()
    assert len(page["items"]) == 2 and page["total"] > 2
    assert all("llama" in m["slug"] for m in page["items"])


async def test_models_table_says_how_to_see_more(sizzle: Sizzle) -> None:
    api = (await sizzle.api.get("/api/v1/models", params={"limit": 3})).json()
    result = await sizzle("models", "--limit", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["MODEL", "NAME"]
    assert [line.split()[0] for line in lines[1:]] == [m["slug"] for m in api["items"]]
    assert f"1-3 of {api['total']}: --offset 3 for more" in result.stderr


async def test_models_refused_filter_is_the_api_message(sizzle: Sizzle) -> None:
    result = await sizzle("models", "--category", "x" * 40, "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert error_line(result).startswith('error: The field "category" can be at most')


async def test_balance(sizzle: Sizzle, clock: FakeClock, state: AppState) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="12.5", free_minutes=5)
    result = await sizzle("balance", "--json")
    api = await sizzle.api.get("/api/v1/billing/balance", headers=account.headers)
    assert parsed(result) == api.json()
    assert parsed(result)["balance_micros"] == 12_500_000

    table = await sizzle("balance")
    assert table.exit_code == 0, table.output
    assert [line.split() for line in table.stdout.splitlines()] == [
        ["Credit", "$12.50"],
        ["Free", "minutes", "5"],
        ["Included", "minutes", "0"],
    ]


async def test_ps_shows_live_sessions_and_all_with_all(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="5")
    first = await launch_ready_session(sizzle.api, state, clock, auth=account.headers)
    stopped = await sizzle("stop", first, "--json")
    assert parsed(stopped)["status"] == "terminated"
    clock.advance(60)
    second = await launch_ready_session(sizzle.api, state, clock, auth=account.headers)

    listed = (await sizzle.api.get("/api/v1/sessions", headers=account.headers)).json()
    assert [s["id"] for s in listed["items"]] == [second, first]

    live = await sizzle("ps", "--json")
    assert parsed(live) == [listed["items"][0]]
    everything = await sizzle("ps", "--all", "--json")
    assert parsed(everything) == listed["items"]

    table = await sizzle("ps")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "STATUS",
        "TIER",
        "MODEL",
        "GPU",
        "MINUTES",
        "CHARGED",
        "CREATED",
    ]
    assert [line.split()[:3] for line in lines[1:]] == [[second[:8], "ready", "starter"]]
    assert first[:8] not in table.stdout
    table_all = await sizzle("ps", "-a")
    assert [line.split()[:2] for line in table_all.stdout.splitlines()[1:]] == [
        [second[:8], "ready"],
        [first[:8], "terminated"],
    ]


async def test_ps_with_no_sessions(sizzle: Sizzle, clock: FakeClock, state: AppState) -> None:
    await logged_in(sizzle, clock, state)
    assert parsed(await sizzle("ps", "--json")) == []
    result = await sizzle("ps")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No live sessions" in result.stderr


async def test_ps_reads_every_page(
    sizzle: Sizzle, clock: FakeClock, state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="50")
    made = []
    for _ in range(3):
        made.append(await launch_ready_session(sizzle.api, state, clock, auth=account.headers))
        await sizzle.api.post(f"/api/v1/sessions/{made[-1]}/stop", headers=account.headers)
        clock.advance(1)
    monkeypatch.setattr(client_api, "PAGE_LIMIT", 2)  # three sessions: two pages
    result = await sizzle("ps", "--all", "--json")
    assert [s["id"] for s in parsed(result)] == made[::-1]


async def test_stop_and_start(sizzle: Sizzle, clock: FakeClock, state: AppState) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="5", free_minutes=1)
    session_id = await launch_ready_session(sizzle.api, state, clock, auth=account.headers)

    started = await sizzle("start", session_id)
    assert started.exit_code == 0, started.output
    assert f"Session {session_id} is active: 1× RTX 4090 (starter), $0.15 a minute" in (
        started.stdout
    )
    clock.advance(90)
    await state.jobs.meter()

    result = await sizzle("stop", session_id)
    assert result.exit_code == 0, result.output
    api = (await sizzle.api.get(f"/api/v1/sessions/{session_id}", headers=account.headers)).json()
    assert api["status"] == "terminated" and api["end_reason"] == "user"
    assert api["charged_minutes"] == 2
    assert result.stdout.strip() == (
        f"Session {session_id} is terminated: 1 free minute used · $0.15 charged for 1 minute."
    )
    assert api["charges_text"] == "1 free minute used · $0.15 charged for 1 minute"

    again = await sizzle("stop", session_id, "--json")
    assert (
        parsed(again)
        == (await sizzle.api.get(f"/api/v1/sessions/{session_id}", headers=account.headers)).json()
    )


async def test_stop_an_unknown_session(sizzle: Sizzle, clock: FakeClock, state: AppState) -> None:
    await logged_in(sizzle, clock, state)
    result = await sizzle("stop", "no-such-session", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert error_line(result) == (
        "error: no session of yours has an id starting with 'no-such-session'"
    )
    whole = await sizzle("stop", "0" * 32, "--json")  # a whole id goes to the API as it is
    assert error_line(whole) == "error: session not found"


async def test_a_bad_key_is_the_401_message_for_every_command(sizzle: Sizzle) -> None:
    bad = "sz_live_" + "z" * 40
    for command in (["ps"], ["balance", "--json"], ["stop", "abc"], ["up", "--tier", "starter"]):
        result = await sizzle(*command, SIZZLE_API_KEY=bad)
        assert result.exit_code == 1, (command, result.output)
        assert error_line(result) == "error: this API key is not valid", command
        assert result.stdout == ""


async def test_a_server_that_is_not_there_is_named(sizzle: Sizzle) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening
        for command in (["tiers", "--json"], ["models"], ["balance"]):
            result = await sizzle(*command, SIZZLE_API_URL=closed, SIZZLE_API_KEY="sz_live_x")
            assert result.exit_code == 1
            assert error_line(result).startswith(
                f"error: cannot reach the Sizzle API at {closed} ("
            ), command
            assert "is the server running" in result.stderr


async def test_a_server_that_is_not_sizzle(sizzle: Sizzle) -> None:
    # Some other web server: a 404 page that is not the API's JSON.
    async def not_sizzle(scope: dict[str, object], receive: object, send: object) -> None:
        assert callable(send)
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"<h1>nope</h1>"})

    async with serve_here(not_sizzle) as other:
        result = await sizzle("tiers", SIZZLE_API_URL=other)
    assert result.exit_code == 1
    assert error_line(result) == f"error: HTTP 404 Not Found from {other}/api/v1/tiers"


def test_the_sizzle_command_has_the_client_commands() -> None:
    result = CliRunner().invoke(sizzle_app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for command in (
        "login",
        "logout",
        "tiers",
        "models",
        "up",
        "start",
        "ps",
        "stop",
        "ssh",
        "balance",
    ):
        assert f" {command} " in result.stdout, command
    for command in ("serve", "worker", "db", "admin"):  # the server's own are still there
        assert f" {command} " in result.stdout, command


async def test_the_sizzle_command_talks_to_the_server(sizzle: Sizzle) -> None:
    runner = CliRunner()
    env = {"SIZZLE_API_URL": sizzle.url, "SIZZLE_CONFIG_DIR": str(sizzle.config_dir)}
    result = await asyncio.to_thread(runner.invoke, sizzle_app, ["tiers", "--json"], env=env)
    assert parsed(result)["tiers"] == (await sizzle.api.get("/api/v1/tiers")).json()
