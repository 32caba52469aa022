"""Email verification, password reset, data export and account deletion, with mail going
through a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import mailbox
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import AuditEvent, LedgerAccount, LedgerEntry, User
from sizzle.security import create_access_token
from sizzle.services.mail import Mail, Mailer
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import (
    PASSWORD,
    assert_error,
    bearer,
    fresh_email,
    launch_active_session,
    log_in,
    make_user,
    run_for,
)
from tests.smtp_inbox import Inbox, free_port

NEW_PASSWORD = "a brand new pass phrase"


@pytest.fixture
def mailing_settings(settings: Settings, inbox: tuple[Inbox, int]) -> Settings:
    return settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{inbox[1]}"})


@pytest.fixture
async def mail_client(mailing_settings: Settings, clock: FakeClock, db: Database) -> Any:
    state = AppState.build(mailing_settings, clock=clock, db=db)
    app = create_app(state=state, run_jobs=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sizzle.test") as http:
        yield http, state


async def _register(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    address = fresh_email()
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": address, "password": PASSWORD, "accept_terms": True},
    )
    assert response.status_code == 201, response.text
    assert response.json()["user"]["email_verified"] is False
    return address, bearer(response.json()["access_token"])


async def test_sign_up_mails_a_link_that_confirms_the_address_once(
    mail_client: Any, inbox: tuple[Inbox, int], clock: FakeClock
) -> None:
    client, _state = mail_client
    mails, _port = inbox
    address, auth = await _register(client)
    assert len(mails.to(address)) == 1
    assert mails.to(address)[0]["Subject"] == "Confirm your email for Sizzle"
    token = mails.link(address, "/verify-email")

    # Neither a sign-in token nor tampered with.
    assert_error(
        await client.post("/api/v1/auth/verify-email", json={"token": auth["Authorization"][7:]}),
        400,
        "invalid_link",
    )
    assert_error(
        await client.post("/api/v1/auth/verify-email", json={"token": token[:-2] + "xx"}),
        400,
        "invalid_link",
    )
    # The link is no sign-in token either.
    assert_error(await client.get("/api/v1/auth/me", headers=bearer(token)), 401)

    assert (
        await client.post("/api/v1/auth/verify-email", json={"token": token})
    ).status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=auth)).json()["email_verified"] is True
    # Following it again changes nothing and says nothing is wrong.
    assert (
        await client.post("/api/v1/auth/verify-email", json={"token": token})
    ).status_code == 204
    resent = await client.post("/api/v1/auth/verify-email/resend", headers=auth)
    assert resent.status_code == 202 and resent.json() == {"sent": False}
    assert len(mails.to(address)) == 1


async def test_a_verification_link_expires(
    mail_client: Any, inbox: tuple[Inbox, int], clock: FakeClock, settings: Settings
) -> None:
    client, _state = mail_client
    mails, _port = inbox
    address, auth = await _register(client)
    clock.advance(settings.email_verification_hours * 3600 + 1)
    old = mails.link(address, "/verify-email")
    assert_error(
        await client.post("/api/v1/auth/verify-email", json={"token": old}), 400, "link_expired"
    )
    auth = await log_in(client, email=address)
    resent = await client.post("/api/v1/auth/verify-email/resend", headers=auth)
    assert resent.json() == {"sent": True} and len(mails.to(address)) == 2
    fresh = mails.link(address, "/verify-email")
    assert (
        await client.post("/api/v1/auth/verify-email", json={"token": fresh})
    ).status_code == 204


async def test_password_reset_by_mail_ends_every_older_sign_in(
    mail_client: Any, inbox: tuple[Inbox, int], clock: FakeClock
) -> None:
    client, _state = mail_client
    mails, _port = inbox
    address, old_auth = await _register(client)
    before = len(mails.messages)

    unknown = await client.post("/api/v1/auth/password-reset", json={"email": "nobody@example.com"})
    known = await client.post("/api/v1/auth/password-reset", json={"email": address.upper()})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()  # nobody learns who has an account
    assert len(mails.messages) == before + 1
    token = mails.link(address, "/reset-password")
    # A reset link cannot confirm the address, nor the other way round.
    assert_error(await client.post("/api/v1/auth/verify-email", json={"token": token}), 400)

    weak = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": "short"}
    )
    assert_error(weak, 422, "weak_password")
    clock.advance(1)
    done = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert done.status_code == 204, done.text

    assert_error(await client.get("/api/v1/auth/me", headers=old_auth), 401, "token_revoked")
    again = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": "another good one"}
    )
    assert_error(again, 400, "link_used")
    assert_error(
        await client.post("/api/v1/auth/login", json={"email": address, "password": PASSWORD}),
        401,
    )
    new_auth = await log_in(client, email=address, password=NEW_PASSWORD)
    me = (await client.get("/api/v1/auth/me", headers=new_auth)).json()
    assert me["email_verified"] is True  # the reset mail proved the mailbox


async def test_a_reset_link_expires(
    mail_client: Any, inbox: tuple[Inbox, int], clock: FakeClock, settings: Settings
) -> None:
    client, _state = mail_client
    mails, _port = inbox
    address, _auth = await _register(client)
    await client.post("/api/v1/auth/password-reset", json={"email": address})
    token = mails.link(address, "/reset-password")
    clock.advance(settings.password_reset_minutes * 60)
    late = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert_error(late, 400, "link_expired")


async def test_without_smtp_mail_goes_to_a_file_only_its_owner_reads(tmp_path: Path) -> None:
    path = tmp_path / "home" / "mail.log"
    mailer = Mailer("", "Sizzle <no-reply@sizzle.test>", mail_file=path)
    with capture_logs() as logs:
        assert await mailer.send(Mail(to="a@example.com", subject="Hi", body="the link"))
        assert await mailer.send(Mail(to="b@example.org", subject="Again", body="From here on"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first, second = mailbox.mbox(path)
    assert (first["To"], first["Subject"], first.get_payload().strip()) == (
        "a@example.com",
        "Hi",
        "the link",
    )
    assert second.get_payload().strip() == ">From here on"  # mbox escapes a line's "From "
    assert [line["event"] for line in logs] == ["mail.written", "mail.written"]
    assert logs[0]["to_domain"] == "example.com" and "the link" not in str(logs)


async def test_a_mail_file_made_before_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    path.write_text("")
    path.chmod(0o644)
    mailer = Mailer("", "Sizzle <no-reply@sizzle.test>", mail_file=path)
    assert await mailer.send(Mail(to="a@example.com", subject="Hi", body="the link"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_mail_server_that_is_away_fails_softly(tmp_path: Path) -> None:
    mailer = Mailer(
        f"smtp://127.0.0.1:{free_port()}",
        "Sizzle <no-reply@sizzle.test>",
        mail_file=tmp_path / "mail.log",
    )
    with capture_logs() as logs:
        assert not await mailer.send(Mail(to="a@example.com", subject="Hi", body="x"))
    assert logs[0]["event"] == "mail.failed"


def test_a_bad_smtp_url_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="SIZZLE_SMTP_URL"):
        Settings(smtp_url="http://mail.example.com")


async def test_the_export_holds_everything_about_me_and_no_secret(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    user = await make_user(state.db, now=clock.now(), credit_usd="3")
    auth = await log_in(client, email=user.email)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=61)
    key = await client.post(
        "/api/v1/keys", json={"name": "ci", "scopes": ["sessions:read"]}, headers=auth
    )
    secret = key.json()["key"]

    response = await client.get("/api/v1/account/export", headers=auth)
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    data = response.json()
    assert data["account"]["email"] == user.email and "password_hash" not in data["account"]
    assert [s["id"] for s in data["sessions"]] == [session_id]
    assert data["sessions"][0]["charged_minutes"] == 2
    assert {e["to_status"] for e in data["session_events"]} >= {"ready", "active"}
    kinds = {entry["kind"] for entry in data["ledger_entries"]}
    assert {"free_minutes_grant", "credit_grant", "session_minute"} <= kinds
    assert data["balances"]["credit_usd_micros"] == 3_000_000
    assert data["api_keys"][0]["name"] == "ci" and "key_hash" not in data["api_keys"][0]
    assert any(event["action"] == "auth.sign_in" for event in data["audit_events"])
    assert secret not in response.text and user.password_hash not in response.text

    # An API key may not take the whole account away.
    assert_error(await client.get("/api/v1/account/export", headers=bearer(secret)), 403)


async def test_deleting_the_account_stops_sessions_erases_me_and_keeps_the_ledger(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    user = await make_user(state.db, now=clock.now(), credit_usd="2", free_minutes=0)
    auth = await log_in(client, email=user.email)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=150)

    wrong = await client.request(
        "DELETE", "/api/v1/account", json={"password": "not mine"}, headers=auth
    )
    assert_error(wrong, 401, "invalid_credentials")
    clock.advance(10)
    gone = await client.request(
        "DELETE", "/api/v1/account", json={"password": PASSWORD}, headers=auth
    )
    assert gone.status_code == 204, gone.text

    async with state.db.read() as tx:
        row = await tx.get(User, user.id)
        assert row is not None and row.deleted_at is not None and not row.is_active
        assert row.email != user.email and row.name is None
        assert user.email.split("@")[0] not in row.email
        # Minutes 1-3 were charged (2:40 of use), and the ledger still holds them.
        charges = await tx.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.session_id == session_id, LedgerEntry.kind == "session_minute")
        )
        assert charges == 3
        credit = await tx.scalar(
            select(LedgerAccount.balance).where(LedgerAccount.name == f"user:{user.id}:credit")
        )
        assert credit == 2_000_000 - 3 * 150_000
        addresses = await tx.scalars(
            select(AuditEvent.ip).where(AuditEvent.user_id == user.id, AuditEvent.ip.is_not(None))
        )
        assert list(addresses) == []
        last = await tx.scalar(
            select(AuditEvent.action)
            .where(AuditEvent.user_id == user.id)
            .order_by(AuditEvent.id.desc())
            .limit(1)
        )
        assert last == "account.deleted"

    session = await client.get(f"/api/v1/sessions/{session_id}", headers=auth)
    assert_error(session, 401, "invalid_token")
    assert_error(
        await client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}),
        401,
    )
    # The address is free again.
    again = await client.post(
        "/api/v1/auth/register",
        json={"email": user.email, "password": PASSWORD, "accept_terms": True},
    )
    assert again.status_code == 201
    # The session ended when the account did.
    admin = await make_user(state.db, now=clock.now(), is_admin=True)
    admin_auth = await log_in(client, email=admin.email)
    ended = (await client.get(f"/api/v1/admin/sessions/{session_id}", headers=admin_auth)).json()
    assert ended["status"] == "terminated" and ended["end_reason"] == "account_deleted"


async def test_an_operator_cannot_delete_their_account_here(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    admin = await make_user(state.db, now=clock.now(), is_admin=True)
    auth = await log_in(client, email=admin.email)
    refused = await client.request(
        "DELETE", "/api/v1/account", json={"password": PASSWORD}, headers=auth
    )
    assert_error(refused, 409, "operator_account")


async def test_a_token_made_before_a_password_change_is_refused(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    user = await make_user(state.db, now=clock.now())
    token = create_access_token(
        user.id,
        secret=state.settings.resolved_secret_key,
        now=clock.now(),
        lifetime=timedelta(days=1),
    )
    clock.advance(5)
    async with state.db.transaction() as tx:
        row = await tx.get(User, user.id)
        assert row is not None
        row.tokens_valid_from = clock.now()
    assert_error(await client.get("/api/v1/auth/me", headers=bearer(token)), 401, "token_revoked")
    fresh = await log_in(client, email=user.email)
    assert (await client.get("/api/v1/auth/me", headers=fresh)).status_code == 200
