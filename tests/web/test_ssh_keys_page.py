"""SSH keys on the account page (paste one with a name, see its fingerprint, remove it), and the
live session page's Connect box: shown where the machine has one of the user's keys, and
nothing new for a newcomer without one."""

from __future__ import annotations

import re

import asyncssh
import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.state import AppState
from tests.user_ssh import Cloud, make_cloud, public_line
from tests.web.pages import csrf_of, post_form, sign_in


@pytest.fixture
def cloud(state: AppState, clock: FakeClock) -> Cloud:
    return make_cloud(state, clock)


async def add_on_page(browser: httpx.AsyncClient, *, name: str, key: str) -> httpx.Response:
    return await post_form(
        browser, "/account/ssh-keys", {"name": name, "public_key": key}, page="/account"
    )


async def test_a_newcomer_sees_what_ssh_keys_are_for_and_adds_and_removes_one(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    page = await browser.get("/account")
    assert "Only needed if you want to log in to your GPU machine yourself" in page.text
    assert "<details >" in page.text or "<details>" in page.text  # the form folded away
    assert 'id="ssh-key-list"' not in page.text

    line = public_line()
    added = await add_on_page(browser, name="work laptop", key=line)
    assert added.status_code == 303 and added.headers["location"] == "/account#ssh-keys"
    listing = await browser.get("/account")
    fingerprint = asyncssh.import_public_key(line).get_fingerprint("sha256")
    assert "work laptop" in listing.text and fingerprint in listing.text

    key_id = re.search(r'action="/account/ssh-keys/([0-9a-f]{32})/remove"', listing.text)
    assert key_id
    removed = await post_form(
        browser, f"/account/ssh-keys/{key_id.group(1)}/remove", {}, page="/account"
    )
    assert removed.status_code == 303
    assert fingerprint not in (await browser.get("/account")).text


async def test_a_bad_key_is_explained_on_the_page_with_what_was_typed(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    private = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    refused = await add_on_page(browser, name="oops", key=private)
    assert refused.status_code == 422
    assert "that is a private key" in refused.text
    assert 'value="oops"' in refused.text
    weak = asyncssh.generate_private_key("ssh-rsa", key_size=1024).export_public_key().decode()
    refused = await add_on_page(browser, name="old", key=weak)
    assert refused.status_code == 422 and "too weak" in refused.text


async def test_another_users_key_cannot_be_removed_and_csrf_is_needed(
    browser: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    assert (await add_on_page(browser, name="mine", key=public_line())).status_code == 303
    mine = re.search(
        r"/account/ssh-keys/([0-9a-f]{32})/remove", (await browser.get("/account")).text
    )
    assert mine
    forged = await browser.post(
        "/account/ssh-keys", data={"name": "x", "public_key": public_line()}
    )
    assert forged.status_code == 403

    transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as other:
        await sign_in(other, db, clock=clock)
        token = csrf_of(await other.get("/account"))
        taken = await other.post(
            f"/account/ssh-keys/{mine.group(1)}/remove", data={"csrf_token": token}
        )
        assert taken.status_code == 404
    assert mine.group(1) in (await browser.get("/account")).text


async def _active_on_cloud(browser: httpx.AsyncClient, cloud: Cloud) -> str:
    """The signed-in user's session, launched on the SSH provider and started; its id."""
    made = await post_form(browser, "/launch", {"tier": "starter"}, page="/launch")
    assert made.status_code == 303, made.text
    session_id = made.headers["location"].rsplit("/", 1)[1]
    await cloud.state.jobs.housekeep()
    await cloud.state.jobs.housekeep()
    started = await post_form(
        browser, f"/sessions/{session_id}/start", {}, page=f"/sessions/{session_id}"
    )
    assert started.status_code == 303, started.text
    return session_id


async def test_the_live_page_offers_connect_where_the_machine_has_my_key(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, cloud: Cloud
) -> None:
    await sign_in(browser, db, clock=clock)
    assert (await add_on_page(browser, name="laptop", key=public_line())).status_code == 303
    session_id = await _active_on_cloud(browser, cloud)
    page = await browser.get(f"/sessions/{session_id}")
    assert f'data-ssh-url="/sessions/{session_id}/ssh.json"' in page.text
    answer = await browser.get(f"/sessions/{session_id}/ssh.json")
    assert answer.status_code == 200, answer.text
    assert answer.json()["command"] == "ssh -p 40022 root@203.0.113.7"


async def test_without_keys_the_live_page_is_as_it_was(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, cloud: Cloud
) -> None:
    await sign_in(browser, db, clock=clock)
    session_id = await _active_on_cloud(browser, cloud)
    page = await browser.get(f"/sessions/{session_id}")
    assert "Your GPU is running." in page.text
    assert 'id="connect"' not in page.text and "SSH" not in page.text
    # a key added now: the page says why this machine does not have it
    assert (await add_on_page(browser, name="late", key=public_line())).status_code == 303
    later = await browser.get(f"/sessions/{session_id}")
    assert 'id="connect"' not in later.text and 'id="ssh-too-late"' in later.text


async def test_a_demo_session_never_offers_connect(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    await sign_in(browser, db, clock=clock)
    assert (await add_on_page(browser, name="laptop", key=public_line())).status_code == 303
    made = await post_form(browser, "/launch", {"tier": "starter"}, page="/launch")
    session_id = made.headers["location"].rsplit("/", 1)[1]
    await state.jobs.run_once()
    clock.advance(state.settings.demo_provision_seconds)
    await state.jobs.run_once()
    await post_form(browser, f"/sessions/{session_id}/start", {}, page=f"/sessions/{session_id}")
    page = await browser.get(f"/sessions/{session_id}")
    assert "Your GPU is running." in page.text
    assert 'id="connect"' not in page.text and 'id="ssh-too-late"' not in page.text
