"""`sizzle up --wait-for-capacity` and `sizzle queue`: waiting for a GPU from the command line,
against a real server whose demo has no GPU free."""

from __future__ import annotations

import pytest

from sizzle.clock import FakeClock
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.client.support import Sizzle, error_line, logged_in, parsed


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"demo_capacity": 0})


async def test_up_with_no_gpu_free_fails_and_says_it_could_wait(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    await logged_in(sizzle, clock, state)
    result = await sizzle("up", "--tier", "starter")
    assert result.exit_code == 1
    assert (
        error_line(result) == "error: no starter GPU is free right now; try another tier or later"
    )
    assert "hint: `--wait-for-capacity` queues it to launch when a GPU is free" in result.stderr


async def test_up_wait_for_capacity_queues_the_launch_and_queue_lists_and_cancels_it(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    account = await logged_in(sizzle, clock, state)
    result = await sizzle(
        "up", "--tier", "pro", "--model", "llama3.1-8b", "--max-minutes", "20",
        "--wait-for-capacity",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    listed = (await sizzle.api.get("/api/v1/launch-queue", headers=account.headers)).json()
    [queued] = listed["items"]
    assert (queued["tier"], queued["model"], queued["max_minutes"]) == ("pro", "llama3.1:8b", 20)
    assert "No pro GPU is free right now, so Sizzle will wait for one." in result.stderr
    assert f"Queued launch {queued['id']}: 1st in line; it waits until 2026-03-02 12:00 UTC." in (
        result.stderr
    )
    assert result.stdout == ""

    clock.advance(65)
    shown = await sizzle("queue")
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.stdout.splitlines() if queued["id"][:8] in line)
    assert "waiting" in row and "pro" in row and "1 min" in row and "2026-03-02 12:00" in row

    cancelled = await sizzle("queue", "--cancel", queued["id"][:6])
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.stdout.strip() == f"Queued launch {queued['id']} is cancelled."
    assert "Nothing is waiting for a GPU." in (await sizzle("queue")).stderr
    everything = parsed(await sizzle("queue", "--all", "--json"))
    assert [(q["id"], q["status"]) for q in everything] == [(queued["id"], "cancelled")]


async def test_up_wait_for_capacity_json_prints_the_queued_launch_only(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    await logged_in(sizzle, clock, state)
    queued = parsed(await sizzle("up", "--tier", "starter", "--wait-for-capacity", "--json"))
    assert (queued["status"], queued["position"]) == ("waiting", 1)


async def test_queue_cancel_of_an_unknown_id_says_so(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    await logged_in(sizzle, clock, state)
    result = await sizzle("queue", "--cancel", "abc")
    assert result.exit_code == 1
    assert error_line(result) == "error: no queued launch of yours has an id starting with 'abc'"
