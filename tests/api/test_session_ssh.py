"""Connecting to a session's machine with one's own SSH key: GET /sessions/{id}/ssh answers the
exact command once the session is active on a provider reached over SSH and the machine was
booted with one of the user's keys; a 409 saying why not otherwise; the owner's keys reach the
provider in the Boot, next to Sizzle's key."""

from __future__ import annotations

import httpx
import pytest

from sizzle.clock import FakeClock
from sizzle.state import AppState
from sizzle.workload.endpoint import SshEndpoint
from tests.helpers import act, assert_error, get_session, sign_up
from tests.user_ssh import Cloud, make_cloud, public_line


@pytest.fixture
def cloud(state: AppState, clock: FakeClock) -> Cloud:
    return make_cloud(state, clock)


async def add_key(client: httpx.AsyncClient, auth: dict[str, str], *, name: str) -> dict[str, str]:
    made = await client.post(
        "/api/v1/ssh-keys", json={"name": name, "public_key": public_line()}, headers=auth
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


async def launch(client: httpx.AsyncClient, cloud: Cloud, auth: dict[str, str]) -> str:
    """A session on the SSH provider, turned ready; its id."""
    made = await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=auth)
    assert made.status_code == 201, made.text
    await cloud.state.jobs.housekeep()  # launched
    await cloud.state.jobs.housekeep()  # reachable: ready
    session = await get_session(client, auth=auth, session_id=made.json()["id"])
    assert session["status"] == "ready", session
    return str(session["id"])


async def active_with_key(client: httpx.AsyncClient, cloud: Cloud) -> tuple[dict[str, str], str]:
    """A user with a key and their session, active on the SSH provider: (auth, session id)."""
    auth = await sign_up(client)
    await add_key(client, auth, name="laptop")
    session_id = await launch(client, cloud, auth)
    assert (await act(client, auth=auth, session_id=session_id, action="start")).status_code == 200
    return auth, session_id


async def ssh_of(
    client: httpx.AsyncClient, auth: dict[str, str], session_id: str
) -> httpx.Response:
    return await client.get(f"/api/v1/sessions/{session_id}/ssh", headers=auth)


async def test_the_owners_keys_go_to_the_provider_next_to_ours(
    client: httpx.AsyncClient, cloud: Cloud
) -> None:
    auth = await sign_up(client)
    laptop = await add_key(client, auth, name="laptop")
    desk = await add_key(client, auth, name="desk")
    other = await sign_up(client)
    await add_key(client, other, name="someone else's")
    await launch(client, cloud, auth)
    [boot] = cloud.provider.boots
    assert boot is not None and boot.ssh_public_key.startswith("ssh-ed25519 ")
    assert set(boot.user_ssh_keys) == {laptop["public_key"], desk["public_key"]}
    assert boot.ssh_public_key not in boot.user_ssh_keys


async def test_an_active_session_with_my_key_answers_the_exact_command(
    client: httpx.AsyncClient, cloud: Cloud
) -> None:
    auth = await sign_up(client)
    key = await add_key(client, auth, name="laptop")
    session_id = await launch(client, cloud, auth)
    assert_error(await ssh_of(client, auth, session_id), 409, "session_not_active")
    assert (await act(client, auth=auth, session_id=session_id, action="start")).status_code == 200

    answer = await ssh_of(client, auth, session_id)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "session_id": session_id,
        "host": "203.0.113.7",
        "port": 40022,
        "username": "root",
        "command": "ssh -p 40022 root@203.0.113.7",
        "vscode_uri": "vscode://vscode-remote/ssh-remote+root@203.0.113.7:40022/root",
        "keys": [{"fingerprint": key["fingerprint"], "name": "laptop"}],
    }
    # a removed key is still on the running machine: shown without its name
    await client.delete(f"/api/v1/ssh-keys/{key['id']}", headers=auth)
    kept = (await ssh_of(client, auth, session_id)).json()["keys"]
    assert kept == [{"fingerprint": key["fingerprint"], "name": None}]


async def test_the_username_is_the_providers(client: httpx.AsyncClient, cloud: Cloud) -> None:
    cloud.provider.endpoint = SshEndpoint(host="gpu-7.example.net", port=22, username="ubuntu")
    auth, session_id = await active_with_key(client, cloud)
    body = (await ssh_of(client, auth, session_id)).json()
    assert body["command"] == "ssh -p 22 ubuntu@gpu-7.example.net"
    assert body["vscode_uri"].endswith("ssh-remote+ubuntu@gpu-7.example.net:22/home/ubuntu")


async def test_without_a_key_on_the_machine_there_is_nothing_to_connect_with(
    client: httpx.AsyncClient, cloud: Cloud
) -> None:
    auth = await sign_up(client)
    session_id = await launch(client, cloud, auth)
    await act(client, auth=auth, session_id=session_id, action="start")
    assert_error(await ssh_of(client, auth, session_id), 409, "no_ssh_key_on_machine")
    # a key added now reaches the next machine, not this one
    await add_key(client, auth, name="late")
    assert_error(await ssh_of(client, auth, session_id), 409, "no_ssh_key_on_machine")


async def test_an_unknown_address_is_ssh_not_ready_and_a_hostile_one_is_refused(
    client: httpx.AsyncClient, cloud: Cloud
) -> None:
    auth, session_id = await active_with_key(client, cloud)
    cloud.provider.endpoint = None
    assert_error(await ssh_of(client, auth, session_id), 409, "ssh_not_ready")
    cloud.provider.endpoint = SshEndpoint(host="1.2.3.4;rm -rf ~", port=22, username="root")
    assert_error(await ssh_of(client, auth, session_id), 409, "ssh_address_unusable")


async def test_the_address_is_asked_of_the_provider_once_a_minute_at_most(
    client: httpx.AsyncClient, cloud: Cloud
) -> None:
    auth, session_id = await active_with_key(client, cloud)
    asked = cloud.provider.endpoint_asks
    for _ in range(3):
        assert (await ssh_of(client, auth, session_id)).status_code == 200
    assert cloud.provider.endpoint_asks == asked + 1
    # and reading the session itself never asks
    await get_session(client, auth=auth, session_id=session_id)
    assert cloud.provider.endpoint_asks == asked + 1
    assert "ssh" not in await get_session(client, auth=auth, session_id=session_id)


async def test_a_demo_session_has_no_ssh_and_another_users_is_a_404(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    auth = await sign_up(client)
    await add_key(client, auth, name="laptop")
    made = await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=auth)
    session_id = made.json()["id"]
    await state.jobs.run_once()
    clock.advance(state.settings.demo_provision_seconds)
    await state.jobs.run_once()
    await act(client, auth=auth, session_id=session_id, action="start")
    assert_error(await ssh_of(client, auth, session_id), 409, "ssh_not_supported")
    assert_error(await ssh_of(client, await sign_up(client), session_id), 404)
    await act(client, auth=auth, session_id=session_id, action="stop")
    assert_error(await ssh_of(client, auth, session_id), 409, "session_ended")
