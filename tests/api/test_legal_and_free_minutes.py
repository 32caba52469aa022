"""The legal documents accepted through the API, free minutes once per confirmed address, and
an operator's suspension with its reason (issue 15)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import func, select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import AuditEvent, FreeMinutesClaim, User
from sizzle.legal import library
from sizzle.state import AppState
from tests.helpers import (
    PASSWORD,
    assert_error,
    bearer,
    confirm_address,
    fresh_email,
    log_in,
    make_user,
    me,
    sign_up,
)

REGISTER = "/api/v1/auth/register"


async def _register(client: httpx.AsyncClient, email: str) -> dict[str, object]:
    response = await client.post(
        REGISTER, json={"email": email, "password": PASSWORD, "accept_terms": True}
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def _delete(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.request(
        "DELETE", "/api/v1/account", json={"password": PASSWORD}, headers=auth
    )
    assert response.status_code == 204, response.text


async def test_register_refuses_without_accepting_the_legal_documents(
    client: httpx.AsyncClient, db: Database
) -> None:
    for body in ({}, {"accept_terms": False}):
        refused = await client.post(
            REGISTER, json={"email": fresh_email(), "password": PASSWORD, **body}
        )
        error = assert_error(refused, 422, "terms_not_accepted")
        assert "/legal/terms" in error["message"] and '"accept_terms": true' in error["message"]
    async with db.read() as tx:
        assert await tx.scalar(select(func.count()).select_from(User)) == 0


async def test_acceptance_is_kept_on_the_account_and_in_the_audit_log(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    body = await _register(client, fresh_email())
    user_id = body["user"]["id"]  # type: ignore[index]
    current = library(None).acceptance_version()
    async with state.db.read() as tx:
        user = await tx.get(User, user_id)
        assert user is not None
        assert (user.terms_version, user.terms_accepted_at) == (current, clock.now())
        event = await tx.scalar(
            select(AuditEvent).where(
                AuditEvent.user_id == user_id, AuditEvent.action == "legal.accepted"
            )
        )
        assert event is not None and event.detail == current


async def test_free_minutes_come_with_the_confirmed_address_not_before(
    client: httpx.AsyncClient,
) -> None:
    email = fresh_email()
    body = await _register(client, email)
    auth = bearer(body["access_token"])  # type: ignore[arg-type]
    assert body["user"]["free_minutes"] == 0  # type: ignore[index]
    await confirm_address(client, user_id=body["user"]["id"], email=email)  # type: ignore[index]
    assert (await me(client, auth=auth))["free_minutes"] == 5
    # Following the link again gives nothing more.
    await confirm_address(client, user_id=body["user"]["id"], email=email)  # type: ignore[index]
    assert (await me(client, auth=auth))["free_minutes"] == 5


async def test_deleting_and_signing_up_again_does_not_give_free_minutes_twice(
    client: httpx.AsyncClient, db: Database
) -> None:
    email = fresh_email()
    first = await sign_up(client, email=email)
    assert (await me(client, auth=first))["free_minutes"] == 5
    await _delete(client, first)

    again = await _register(client, email.upper())  # the same address, however typed
    auth = bearer(again["access_token"])  # type: ignore[arg-type]
    await confirm_address(client, user_id=again["user"]["id"], email=email)  # type: ignore[index]
    assert (await me(client, auth=auth))["free_minutes"] == 0
    async with db.read() as tx:
        refused = await tx.scalar(
            select(AuditEvent.action).where(
                AuditEvent.user_id == again["user"]["id"],  # type: ignore[index]
                AuditEvent.action == "account.free_minutes_refused",
            )
        )
        digests = list(await tx.scalars(select(FreeMinutesClaim.address_digest)))
    assert refused == "account.free_minutes_refused"
    # Only a keyed hash is kept: never the address.
    assert len(digests) == 1 and len(digests[0]) == 64 and email not in digests[0]


async def test_an_account_from_before_the_digests_is_remembered_when_deleted(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    """Accounts made before this change had their minutes at sign-up and no digest."""
    old = await make_user(db, now=clock.now(), free_minutes=5)
    async with db.read() as tx:
        assert await tx.scalar(select(func.count()).select_from(FreeMinutesClaim)) == 0
    await _delete(client, await log_in(client, email=old.email))

    again = await _register(client, old.email)
    auth = bearer(again["access_token"])  # type: ignore[arg-type]
    await confirm_address(client, user_id=again["user"]["id"], email=old.email)  # type: ignore[index]
    assert (await me(client, auth=auth))["free_minutes"] == 0


async def test_two_addresses_each_get_their_minutes(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        assert (await me(client, auth=await sign_up(client)))["free_minutes"] == 5


async def test_login_and_terms_say_when_a_new_version_must_be_accepted(
    client: httpx.AsyncClient, state: AppState, tmp_path: Path
) -> None:
    email = fresh_email()
    auth = await sign_up(client, email=email)
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.json()["terms_must_accept"] is False
    first = (await client.get("/api/v1/auth/terms", headers=auth)).json()
    assert first["must_accept"] is False
    assert [doc["slug"] for doc in first["documents"]] == ["terms", "acceptable-use", "privacy"]

    # The operator publishes a new Terms of Service.
    folder = tmp_path / "legal"
    folder.mkdir()
    (folder / "terms.md").write_text("<!-- version: 2027-01-01 -->\n# Terms of Service\n\nNew.\n")
    state.settings.legal_dir = folder

    login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200 and login.json()["terms_must_accept"] is True
    terms = (await client.get("/api/v1/auth/terms", headers=auth)).json()
    assert terms["must_accept"] is True and terms["current_version"].startswith("tos-2027-01-01.")
    # The API keeps working meanwhile: nothing stops a script by surprise.
    assert (await client.get("/api/v1/auth/me", headers=auth)).status_code == 200

    stale = await client.post(
        "/api/v1/auth/terms", json={"version": first["current_version"]}, headers=auth
    )
    assert_error(stale, 409, "terms_changed")
    accepted = await client.post(
        "/api/v1/auth/terms", json={"version": terms["current_version"]}, headers=auth
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["must_accept"] is False
    assert accepted.json()["accepted_version"] == terms["current_version"]


async def test_accepting_terms_takes_a_person_not_an_api_key(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    created = await client.post(
        "/api/v1/keys", json={"name": "ci", "scopes": ["sessions:read"]}, headers=auth
    )
    assert created.status_code == 201, created.text
    key = bearer(created.json()["key"])
    assert (await client.get("/api/v1/auth/terms", headers=key)).status_code == 200
    refused = await client.post("/api/v1/auth/terms", json={"version": "x"}, headers=key)
    assert refused.status_code == 403


@pytest.fixture
async def operator_auth(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> dict[str, str]:
    operator = await make_user(db, now=clock.now(), is_admin=True)
    return await log_in(client, email=operator.email)


async def test_an_operator_suspends_through_the_api_with_a_reason_the_user_reads(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, operator_auth: dict[str, str]
) -> None:
    user = await make_user(db, now=clock.now())
    auth = await log_in(client, email=user.email)
    path = f"/api/v1/admin/users/{user.id}"

    missing = await client.post(f"{path}/suspend", json={}, headers=operator_auth)
    assert_error(missing, 422)
    bare_other = await client.post(
        f"{path}/suspend", json={"reason": "other"}, headers=operator_auth
    )
    assert_error(bare_other, 422, "note_required")
    suspended = await client.post(
        f"{path}/suspend",
        json={"reason": "acceptable_use", "note": "Port scanning from session 4f2a"},
        headers=operator_auth,
    )
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["suspended"] is True

    refused = assert_error(await client.get("/api/v1/auth/me", headers=auth), 403)
    assert refused["code"] == "account_suspended"
    assert "breaking the Acceptable Use Policy" in refused["message"]
    assert "Port scanning from session 4f2a" in refused["message"]
    assert "/legal/acceptable-use" in refused["message"]
    details = (await client.get("/api/v1/auth/me", headers=auth)).json()["error"]["details"]
    assert details == {"reason": "acceptable_use"}

    back = await client.post(f"{path}/unsuspend", headers=operator_auth)
    assert back.status_code == 200 and back.json()["suspension_reason"] is None
    assert (await client.get("/api/v1/auth/me", headers=auth)).status_code == 200


async def test_suspension_through_the_api_refuses_the_unknown(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, operator_auth: dict[str, str]
) -> None:
    user = await make_user(db, now=clock.now())
    unknown_reason = await client.post(
        f"/api/v1/admin/users/{user.id}/suspend", json={"reason": "mood"}, headers=operator_auth
    )
    assert_error(unknown_reason, 422)
    nobody = await client.post(
        "/api/v1/admin/users/0123456789abcdef/suspend",
        json={"reason": "payment"},
        headers=operator_auth,
    )
    assert_error(nobody, 404)
    not_operator = await client.post(
        f"/api/v1/admin/users/{user.id}/suspend",
        json={"reason": "payment"},
        headers=await log_in(client, email=user.email),
    )
    assert not_operator.status_code == 403


async def test_api_sign_in_errors_are_sentences_with_the_next_step(
    client: httpx.AsyncClient,
) -> None:
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": fresh_email(), "password": "not it at all"}
    )
    message = assert_error(wrong, 401, "invalid_credentials")["message"]
    assert message[0].isupper() and message.endswith(".") and "Forgot your password" in message
    weak = await client.post(
        REGISTER, json={"email": fresh_email(), "password": "short", "accept_terms": True}
    )
    message = assert_error(weak, 422, "weak_password")["message"]
    assert message.startswith("Your password must be at least 8 characters") and "Choose" in message
    long_name = await client.post(
        REGISTER,
        json={
            "email": fresh_email(),
            "password": PASSWORD,
            "accept_terms": True,
            "name": "n" * 150,
        },
    )
    message = assert_error(long_name, 422, "name_too_long")["message"]
    assert "at most 100 characters" in message and "String should" not in message


async def test_a_reset_link_proves_the_address_and_gives_the_minutes_once(
    client: httpx.AsyncClient, state: AppState
) -> None:
    email = fresh_email()
    body = await _register(client, email)
    mail = await state.account_links.password_reset_mail(email, base_url="")
    assert mail is not None
    token = unquote(mail.body.split("token=", 1)[1].split()[0])
    await state.account_links.reset_password(token, "a brand new pass phrase")
    auth = await log_in(client, email=email, password="a brand new pass phrase")
    mine = await me(client, auth=auth)
    assert mine["email_verified"] is True and mine["free_minutes"] == 5
    await confirm_address(client, user_id=body["user"]["id"], email=email)  # type: ignore[index]
    assert (await me(client, auth=auth))["free_minutes"] == 5
