"""`sizzle ssh ID`: the exact command that logs in to an active session's machine with the
user's own key (only the command on stdout), the API's JSON with --json, and the API's reason
when there is no way in."""

from __future__ import annotations

import pytest

from sizzle.clock import FakeClock
from sizzle.state import AppState
from tests.client.support import Sizzle, error_line, logged_in, parsed
from tests.helpers import act, create_session, log_in
from tests.user_ssh import Cloud, make_cloud, public_line


@pytest.fixture
def cloud(state: AppState, clock: FakeClock) -> Cloud:
    return make_cloud(state, clock)


async def test_ssh_prints_the_command_alone_on_stdout(
    sizzle: Sizzle, clock: FakeClock, state: AppState, cloud: Cloud
) -> None:
    account = await logged_in(sizzle, clock, state)
    auth = await log_in(sizzle.api, email=account.email)  # keys are added with a sign-in
    added = await sizzle.api.post(
        "/api/v1/ssh-keys", json={"name": "laptop", "public_key": public_line()}, headers=auth
    )
    assert added.status_code == 201, added.text
    session_id = (await create_session(sizzle.api, auth=auth))["id"]
    await state.jobs.housekeep()
    await state.jobs.housekeep()
    assert (await act(sizzle.api, auth=auth, session_id=session_id, action="start")).is_success

    result = await sizzle("ssh", session_id)
    assert result.exit_code == 0, result.output
    assert result.stdout == "ssh -p 40022 root@203.0.113.7\n"
    assert "laptop" in result.stderr and "vscode://vscode-remote/" in result.stderr
    api = await sizzle.api.get(f"/api/v1/sessions/{session_id}/ssh", headers=account.headers)
    assert parsed(await sizzle("ssh", session_id, "--json")) == api.json()


async def test_ssh_without_a_key_on_the_machine_says_so(
    sizzle: Sizzle, clock: FakeClock, state: AppState, cloud: Cloud
) -> None:
    account = await logged_in(sizzle, clock, state)
    auth = await log_in(sizzle.api, email=account.email)
    session_id = (await create_session(sizzle.api, auth=auth))["id"]
    await state.jobs.housekeep()
    await state.jobs.housekeep()
    await act(sizzle.api, auth=auth, session_id=session_id, action="start")
    result = await sizzle("ssh", session_id)
    assert result.exit_code == 1 and result.stdout == ""
    assert error_line(result).startswith("error: This machine has none of your SSH keys")
