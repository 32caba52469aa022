"""The CLI takes id prefixes wherever it takes an id, shows short ids that fit 80 columns,
points at the live page, and tells money as the pages do (domain/charges.py)."""

from __future__ import annotations

import json
import uuid

import pytest

from sizzle.clock import FakeClock
from sizzle.services import sessions as sessions_service
from sizzle.state import AppState
from tests.client.support import Sizzle, error_line, logged_in, parsed
from tests.helpers import launch_ready_session


class ChosenIds:
    """uuid.uuid4 of the sessions service: the ids the test chooses, to make prefixes meet."""

    def __init__(self, *hex_ids: str) -> None:
        self.ids = [uuid.UUID(hex=one) for one in hex_ids]

    def uuid4(self) -> uuid.UUID:
        return self.ids.pop(0)


async def test_a_prefix_of_an_id_is_taken_and_an_ambiguous_one_lists_the_matches(
    sizzle: Sizzle, clock: FakeClock, state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="5")
    chosen = ChosenIds("abcdef01" + "0" * 24, "abcdef02" + "0" * 24)
    monkeypatch.setattr(sessions_service, "uuid", chosen)
    first = await launch_ready_session(sizzle.api, state, clock, auth=account.headers)
    await sizzle("stop", first, "--json")
    await launch_ready_session(sizzle.api, state, clock, auth=account.headers)

    both = await sizzle("stop", "abcdef0")
    assert both.exit_code == 1 and both.stdout == ""
    assert error_line(both).startswith("error: 2 sessions have an id starting with 'abcdef0': ")
    assert "abcdef02" + "0" * 24 + " (ready, starter, " in both.stderr
    assert "abcdef01" + "0" * 24 + " (terminated, starter, " in both.stderr
    assert "give more characters" in both.stderr

    stopped = await sizzle("stop", "ABCDEF02", "--json")
    assert parsed(stopped)["id"] == "abcdef02" + "0" * 24
    assert parsed(stopped)["status"] == "terminated"


async def test_ps_fits_80_columns_with_ids_that_work(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="5")
    session_id = await launch_ready_session(sizzle.api, state, clock, auth=account.headers)
    await sizzle.api.post(f"/api/v1/sessions/{session_id}/start", headers=account.headers)
    clock.advance(61)
    await state.jobs.meter()
    table = await sizzle("ps", COLUMNS="80")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), table.stdout
    shown = lines[1].split()[0]  # other cells may wrap onto more lines; the id never does
    assert shown == session_id[:8]
    assert "$0.00" in lines[1] and "(2 free" in lines[1]
    stopped = await sizzle("stop", shown)
    assert stopped.stdout.strip() == (
        f"Session {session_id} is terminated: 2 free minutes used · $0.00 charged."
    )


async def test_up_names_the_live_page(sizzle: Sizzle, clock: FakeClock, state: AppState) -> None:
    await logged_in(sizzle, clock, state, credit_usd="5")

    async def ready() -> None:
        await state.jobs.run_once()
        clock.advance(state.settings.demo_provision_seconds)
        await state.jobs.run_once()

    sizzle.driver.steps = [ready]
    result = await sizzle("up", "--tier", "starter", "--no-start")
    assert result.exit_code == 0, result.output
    listed = (await sizzle("ps", "--json")).stdout
    session_id = json.loads(listed)[0]["id"]
    url = f"{sizzle.url}/sessions/{session_id}"
    assert f"Watch it live: {url}" in result.stderr  # at once, while it waits
    assert f"Watch it live: {url}" in result.stdout
