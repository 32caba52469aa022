"""`sizzle up`: create a session, wait with progress until its GPU is ready, start it.

The demo provider's GPU is ready `demo_provision_seconds` after launch on the fake clock; each
time `up` would sleep between polls, the test runs the next step of the jobs instead."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import select

from sizzle.client.api import SizzleClient
from sizzle.clock import FakeClock
from sizzle.db.models import GpuSession
from sizzle.domain.tiers import TIERS
from sizzle.errors import NoCapacity
from sizzle.services.sessions import record_progress
from sizzle.state import AppState
from tests.client.support import INTERRUPT, POLL_SECONDS, Sizzle, error_line, logged_in, parsed
from tests.helpers import PASSWORD, make_user


async def _only_session_id(state: AppState) -> str:
    async with state.db.read() as tx:
        (session_id,) = (await tx.scalars(select(GpuSession.id))).all()
    return session_id


def _launch_steps(sizzle: Sizzle, state: AppState, clock: FakeClock) -> None:
    """Poll 1 sees pending; then the launch (with a word of progress); then the GPU is ready."""

    async def launch() -> None:
        await state.jobs.run_once()
        await record_progress(state.db, await _only_session_id(state), "booting the GPU", 40)

    async def become_ready() -> None:
        clock.advance(state.settings.demo_provision_seconds)
        await state.jobs.run_once()

    sizzle.driver.steps = [launch, become_ready]


def _progress_lines(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.startswith("  ")]


async def test_up_waits_with_progress_then_starts(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="5")
    _launch_steps(sizzle, state, clock)

    result = await sizzle("up", "--tier", "starter", "--max-minutes", "30")
    assert result.exit_code == 0, result.output
    assert sizzle.driver.waits == [POLL_SECONDS, POLL_SECONDS]
    session_id = await _only_session_id(state)
    assert f"Session {session_id} on starter: waiting for its GPU." in result.stderr
    assert _progress_lines(result.stderr) == [
        "pending",
        "provisioning: booting the GPU 40%",
        "ready",
    ]

    api = await sizzle.api.get(f"/api/v1/sessions/{session_id}", headers=account.headers)
    assert api.json()["status"] == "active"
    assert api.json()["max_minutes"] == 30
    assert f"Session {session_id} is active: 1× RTX 4090 (starter)" in result.stdout
    assert f"Stop it with `sizzle stop {session_id}`." in result.stdout


async def test_up_json_prints_the_started_session_only(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="5")
    _launch_steps(sizzle, state, clock)

    result = await sizzle("up", "--tier", "starter", "--model", "llama3.1-8b", "--json")
    session = parsed(result)
    api = await sizzle.api.get(f"/api/v1/sessions/{session['id']}", headers=account.headers)
    assert session == api.json()
    assert (session["status"], session["model"]) == ("active", "llama3.1:8b")
    assert "provisioning: booting the GPU 40%" in result.stderr  # progress stays on stderr


async def test_up_no_start_leaves_it_ready_and_unbilled(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    await logged_in(sizzle, clock, state, credit_usd="5")
    _launch_steps(sizzle, state, clock)

    result = await sizzle("up", "--tier", "starter", "--no-start", "--json")
    session = parsed(result)
    assert session["status"] == "ready"
    assert session["started_at"] is None and session["charged_minutes"] == 0

    human = await sizzle("start", session["id"], "--json")
    assert parsed(human)["status"] == "active"


async def test_up_that_fails_to_provision_says_why(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="5")
    demo = state.providers["demo"]

    async def broken(*args: object, **kwargs: object) -> str:
        raise NoCapacity("the demo rack is on fire")

    demo.provision = broken  # type: ignore[method-assign]

    async def launch() -> None:
        await state.jobs.run_once()

    sizzle.driver.steps = [launch]
    result = await sizzle("up", "--tier", "starter")
    assert result.exit_code == 1
    session_id = await _only_session_id(state)
    api = (await sizzle.api.get(f"/api/v1/sessions/{session_id}", headers=account.headers)).json()
    assert api["status"] == "failed"
    assert "the demo rack is on fire" in api["error"]
    assert error_line(result) == f"error: session {session_id} failed: {api['error']}"
    assert result.stdout == ""

    # With --json, the failed session is the document, and the exit status still says so.
    sizzle.driver.steps = [launch]
    again = await sizzle("up", "--tier", "starter", "--json")
    assert again.exit_code == 1
    failed = json.loads(again.stdout)
    assert failed["id"] != session_id and failed["status"] == "failed"
    api = await sizzle.api.get(f"/api/v1/sessions/{failed['id']}", headers=account.headers)
    assert failed == api.json()
    assert error_line(again) == f"error: session {failed['id']} failed: {failed['error']}"


async def test_ctrl_c_while_waiting_leaves_the_session_and_says_how_to_stop_it(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="5")
    sizzle.driver.steps = [INTERRUPT]

    result = await sizzle("up", "--tier", "starter")
    assert result.exit_code == 130
    session_id = await _only_session_id(state)
    assert f"Session {session_id} is still pending: it goes on." in result.stderr
    assert f"`sizzle stop {session_id}`" in result.stderr
    api = await sizzle.api.get(f"/api/v1/sessions/{session_id}", headers=account.headers)
    assert api.json()["status"] == "pending"  # not stopped behind the user's back


async def test_up_without_credit_is_the_402_message(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="0", free_minutes=0)
    result = await sizzle("up", "--tier", "starter", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert error_line(result) == (
        "error: no free minutes or credit left for the first minute; add credit to continue"
    )
    listed = await sizzle.api.get("/api/v1/sessions", headers=account.headers)
    assert listed.json()["total"] == 0
    assert sizzle.driver.waits == []


async def test_up_on_an_unknown_tier_is_the_422_message(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    await logged_in(sizzle, clock, state)
    result = await sizzle("up", "--tier", "gigantic")
    assert result.exit_code == 1
    assert error_line(result) == (
        "error: unknown tier 'gigantic'; tiers: starter, pro, beast, ultra"
    )


async def test_up_usage_mistakes_exit_2(sizzle: Sizzle, clock: FakeClock, state: AppState) -> None:
    await logged_in(sizzle, clock, state)
    assert (await sizzle("up")).exit_code == 2  # --tier is required
    assert (await sizzle("up", "--tier", "starter", "--max-minutes", "0")).exit_code == 2
    assert sizzle.driver.waits == []


async def test_up_on_a_terminal_shows_a_live_progress_bar(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    await logged_in(sizzle, clock, state, credit_usd="5")
    _launch_steps(sizzle, state, clock)

    result = await sizzle("up", "--tier", "starter", "--json", FORCE_COLOR="1", TERM="xterm")
    assert parsed(result)["status"] == "active"
    assert "\x1b[" in result.stderr  # rich drew on "the terminal" (stderr) ...
    assert "booting the GPU" in result.stderr
    assert "\x1b[" not in result.stdout  # ... and stdout is still only the JSON


async def test_up_with_a_spending_cap_in_the_users_own_style(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="5")
    _launch_steps(sizzle, state, clock)
    result = await sizzle("up", "--tier", "starter", "--spend-cap", "$0,45", "--json")
    session = parsed(result)
    price = TIERS["starter"].price_micros_per_minute
    assert session["max_minutes"] == 450_000 // price  # the minutes $0.45 pays for

    refused = await sizzle("up", "--tier", "starter", "--spend-cap", "five dollars")
    assert refused.exit_code == 1
    assert error_line(refused).startswith('error: "five dollars" is not an amount of money.')
    api = await sizzle.api.get("/api/v1/sessions", headers=account.headers)
    assert api.json()["total"] == 1  # the refused cap made no session


async def test_a_create_whose_answer_is_lost_is_asked_again_and_rents_one_gpu(
    served: str, clock: FakeClock, state: AppState
) -> None:
    user = await make_user(state.db, now=clock.now(), credit_usd="5")
    forwarded: list[str | None] = []

    class AnswerLostOnce(httpx.HTTPTransport):
        """The first create reaches the server, then its answer never comes back."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            if request.method == "POST" and request.url.path == "/api/v1/sessions":
                forwarded.append(request.headers.get("idempotency-key"))
                if len(forwarded) == 1:
                    response.close()
                    raise httpx.ReadTimeout("the answer was lost", request=request)
            return response

    def create() -> dict[str, object]:
        with SizzleClient(served, transport=AnswerLostOnce()) as client:
            token = client.sign_in(user.email, PASSWORD).token
            key = client.create_key(token, name="retry test")["key"]
        with SizzleClient(served, str(key), transport=AnswerLostOnce()) as client:
            return client.create_session(tier="starter")

    session = await asyncio.to_thread(create)
    assert len(forwarded) == 2 and forwarded[0] and forwarded[0] == forwarded[1]
    async with state.db.read() as tx:
        assert list(await tx.scalars(select(GpuSession.id))) == [session["id"]]


async def test_up_takes_an_idle_limit_or_never(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    account = await logged_in(sizzle, clock, state, credit_usd="5")
    _launch_steps(sizzle, state, clock)
    result = await sizzle("up", "--tier", "starter", "--idle-minutes", "never")
    assert result.exit_code == 0, result.output
    session_id = await _only_session_id(state)
    api = await sizzle.api.get(f"/api/v1/sessions/{session_id}", headers=account.headers)
    assert (api.json()["status"], api.json()["idle_minutes"]) == ("active", None)


async def test_up_with_an_idle_limit_not_offered_says_which_are(
    sizzle: Sizzle, clock: FakeClock, state: AppState
) -> None:
    await logged_in(sizzle, clock, state, credit_usd="5")
    refused = await sizzle("up", "--tier", "starter", "--idle-minutes", "7")
    assert refused.exit_code != 0
    assert "5, 15, 30 or 60 minutes, or never" in refused.output
    typo = await sizzle("up", "--tier", "starter", "--idle-minutes", "soon")
    assert typo.exit_code == 2 and "give 5, 15, 30 or 60, or never" in typo.output
    async with state.db.read() as tx:
        assert (await tx.scalars(select(GpuSession.id))).all() == []
