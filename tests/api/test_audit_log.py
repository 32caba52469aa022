"""The audit log: what is recorded, with whom and from where; the operator's view, filters
and CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import httpx

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.state import AppState
from tests.helpers import (
    PASSWORD,
    act,
    assert_error,
    bearer,
    launch_active_session,
    log_in,
    make_user,
    run_for,
    sign_up,
)

BROWSER = {"User-Agent": "Mozilla/5.0 (audit test)"}


async def _admin(client: httpx.AsyncClient, db: Database, clock: FakeClock) -> dict[str, str]:
    admin = await make_user(db, now=clock.now(), is_admin=True)
    return await log_in(client, email=admin.email)


async def _log(
    client: httpx.AsyncClient, admin: dict[str, str], **filters: Any
) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/v1/admin/audit", params={"limit": 500, **filters}, headers=admin
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] >= len(body["items"])
    return list(body["items"])


async def test_sign_ins_and_failures_are_recorded_with_address_and_browser(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": "not it"}, headers=BROWSER
    )
    assert_error(wrong, 401, "invalid_credentials")
    nobody = await client.post(
        "/api/v1/auth/login", json={"email": "ghost@example.com", "password": "x" * 9}
    )
    assert_error(nobody, 401)
    ok = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}, headers=BROWSER
    )
    assert ok.status_code == 200
    admin = await _admin(client, db, clock)

    mine = await _log(client, admin, user_id=user.id, action="auth.")
    assert [row["action"] for row in mine] == ["auth.sign_in", "auth.sign_in_failed"]
    signed_in, failed = mine
    assert signed_in["actor"] == f"user:{user.id}" and signed_in["detail"] == "api"
    assert signed_in["ip"] == "127.0.0.1" and signed_in["user_agent"] == BROWSER["User-Agent"]
    assert failed["detail"].startswith("api: invalid_credentials")
    # An address with no account is still a failed sign-in, by nobody we know.
    ghost = [
        row
        for row in await _log(client, admin, action="auth.sign_in_failed")
        if "ghost@example.com" in (row["detail"] or "")
    ]
    assert len(ghost) == 1 and ghost[0]["actor"] == "anonymous" and ghost[0]["user_id"] is None


async def test_keys_sessions_and_ledger_entries_are_in_the_log(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    auth = await sign_up(client)
    me = (await client.get("/api/v1/auth/me", headers=auth)).json()
    made = await client.post(
        "/api/v1/keys", json={"name": "laptop", "scopes": ["sessions:read"]}, headers=auth
    )
    key_id = made.json()["id"]
    assert (await client.delete(f"/api/v1/keys/{key_id}", headers=auth)).status_code == 204
    session_id = await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=90)
    assert (await act(client, auth=auth, session_id=session_id, action="stop")).status_code == 200
    admin = await _admin(client, db, clock)

    rows = await _log(client, admin, user_id=me["id"])
    actions = [row["action"] for row in reversed(rows)]  # oldest first
    assert sorted(actions[:2]) == ["account.created", "ledger.free_minutes_grant"]
    assert actions.index("key.created") < actions.index("key.revoked")
    transitions = [a for a in actions if a.startswith("session.")]
    assert transitions == [
        "session.pending",
        "session.provisioning",
        "session.ready",
        "session.active",
        "session.stopping",
        "session.terminated",
    ]
    started = next(row for row in rows if row["action"] == "session.active")
    assert started["actor"] == f"user:{me['id']}" and started["target"] == f"session:{session_id}"
    assert started["ip"] == "127.0.0.1"
    by_job = next(row for row in rows if row["action"] == "session.provisioning")
    assert by_job["actor"] == "system:provisioner" and by_job["ip"] is None
    # Two minutes charged, each a ledger entry in the log, naming the session.
    charges = [row for row in rows if row["action"].startswith("ledger.") and row["target"]]
    assert len(charges) == 2
    assert {row["target"] for row in charges} == {f"session:{session_id}"}
    assert all(row["detail"].startswith("1 minutes") for row in charges)
    # The ledger's own filters: one kind, the family, and an actor it cannot have.
    minutes = await _log(client, admin, user_id=me["id"], action="ledger.session_minute")
    assert [row["target"] for row in minutes] == [f"session:{session_id}"] * 2
    money = await _log(client, admin, user_id=me["id"], action="ledger.", actor="ledger")
    assert {row["action"] for row in money} == {
        "ledger.session_minute",
        "ledger.free_minutes_grant",
    }
    assert await _log(client, admin, action="ledger.", actor=f"user:{me['id']}") == []
    assert await _log(client, admin, user_id=me["id"], action="session.") != []


async def test_filters_paging_and_who_may_read(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    early = await make_user(db, now=clock.now())
    await log_in(client, email=early.email)
    clock.advance(timedelta(days=2).total_seconds())
    late = await make_user(db, now=clock.now())
    late_auth = await log_in(client, email=late.email)
    admin = await _admin(client, db, clock)

    day_two = (clock.now() - timedelta(hours=1)).isoformat()
    recent = await _log(client, admin, since=day_two, action="auth.sign_in")
    assert {row["user_id"] for row in recent} >= {late.id}
    assert early.id not in {row["user_id"] for row in recent}
    older = await _log(client, admin, until=day_two, action="auth.sign_in")
    assert {row["user_id"] for row in older} == {early.id}
    by_actor = await _log(client, admin, actor=f"user:{late.id}")
    assert by_actor and {row["actor"] for row in by_actor} == {f"user:{late.id}"}
    assert await _log(client, admin, ip="203.0.113.9") == []
    # Filtering by address leaves the ledger out: its entries come from no address.
    assert all(
        not row["action"].startswith("ledger.") for row in await _log(client, admin, ip="127.0.0.1")
    )

    # Pages of 3 read in turn are the whole log in one, events and ledger entries interleaved.
    everything = await _log(client, admin)
    assert {row["actor"] for row in everything} >= {"ledger", f"user:{late.id}"}
    paged: list[dict[str, Any]] = []
    for offset in range(0, len(everything) + 3, 3):
        page = await client.get(
            "/api/v1/admin/audit", params={"limit": 3, "offset": offset}, headers=admin
        )
        assert page.json()["total"] == len(everything)
        paged += page.json()["items"]
    assert paged == everything

    assert_error(await client.get("/api/v1/admin/audit", headers=late_auth), 403)
    assert_error(await client.get("/api/v1/admin/audit.csv", headers=late_auth), 403)
    assert_error(await client.get("/api/v1/admin/audit"), 401)
    assert_error(
        await client.get("/api/v1/admin/audit", params={"since": "soon"}, headers=admin), 422
    )


async def test_csv_export_has_the_rows_and_defuses_formulas(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    await client.post(
        "/api/v1/auth/login",
        json={"email": user.email, "password": PASSWORD},
        headers={"User-Agent": '=HYPERLINK("http://evil.example")'},
    )
    admin = await _admin(client, db, clock)
    response = await client.get(
        "/api/v1/admin/audit.csv", params={"user_id": user.id}, headers=admin
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {row["action"] for row in rows} >= {"auth.sign_in", "account.created"}
    signed_in = next(row for row in rows if row["action"] == "auth.sign_in")
    assert signed_in["user_agent"].startswith("'=HYPERLINK")
    assert signed_in["user_id"] == user.id and signed_in["at"].startswith("2026-")


async def test_an_event_is_kept_only_with_the_change_it_describes(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    """A key refused for a bad expiry leaves no `key.created` behind."""
    auth = await sign_up(client)
    refused = await client.post(
        "/api/v1/keys",
        json={
            "name": "late",
            "scopes": ["sessions:read"],
            "expires_at": (clock.now() - timedelta(days=1)).isoformat(),
        },
        headers=auth,
    )
    assert refused.status_code == 422
    admin = await _admin(client, db, clock)
    assert await _log(client, admin, action="key.created") == []


async def test_operator_actions_are_recorded(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    from tests.web.pages import post_form, sign_in

    transport = client._transport  # the same app, with a browser's cookies
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as browser:
        operator = await sign_in(browser, db, clock=clock, is_admin=True)
        target = await make_user(db, now=clock.now())
        granted = await post_form(
            browser, f"/admin/users/{target.id}/grant", {"amount": "5"}, page="/admin/users"
        )
        assert granted.status_code == 303
        suspended = await post_form(
            browser,
            f"/admin/users/{target.id}/suspend",
            {"reason": "acceptable_use"},
            page="/admin/users",
        )
        assert suspended.status_code == 303
        page = await browser.get("/admin/audit", params={"user": target.email})
        assert page.status_code == 200
        assert "admin.user_suspended" in page.text and "admin.credit_granted" in page.text
        csv_file = await browser.get("/admin/audit.csv", params={"action": "admin."})
        assert csv_file.status_code == 200

    admin = bearer(
        (
            await client.post(
                "/api/v1/auth/login", json={"email": operator.email, "password": PASSWORD}
            )
        ).json()["access_token"]
    )
    rows = await _log(client, admin, action="admin.", user_id=target.id)
    assert [row["action"] for row in rows] == ["admin.user_suspended", "admin.credit_granted"]
    assert {row["actor"] for row in rows} == {f"operator:{operator.id}"}
    assert rows[1]["detail"] == "5000000 usd_micros"


async def test_bad_filters_are_422_not_500(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    admin = await _admin(client, db, clock)
    for params in (
        {"until": "0.5"},
        {"since": "99999999999999"},
        {"since": "9999-12-31T23:59:59-23:00"},
        {"until": "0001-01-01T00:00:00+01:00"},
        {"user_id": "\x00"},
        {"action": "auth.\x00"},
    ):
        response = await client.get("/api/v1/admin/audit", params=params, headers=admin)
        assert_error(response, 422)
