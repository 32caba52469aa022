"""The operator pages: admins only; providers, sessions with their launch log, users with
credit grants and suspension, revenue per day; every form behind the CSRF check."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select, update

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import (
    AuditEvent,
    GpuSession,
    LaunchAttempt,
    LedgerEntry,
    SessionEvent,
    User,
)
from sizzle.errors import ProviderUnavailable
from sizzle.providers.base import ProviderHealth
from sizzle.services import ledger
from sizzle.state import AppState
from tests.helpers import (
    PASSWORD,
    assert_error,
    launch_active_session,
    log_in,
    make_user,
    run_for,
    signed_in_user,
)
from tests.web.pages import csrf_of, post_form, sign_in

PAGES = (
    "/admin",
    "/admin/sessions",
    "/admin/sessions/abc123",
    "/admin/users",
    "/admin/purchases",
    "/admin/revenue",
)


def row_with(page: httpx.Response, text: str) -> str:
    """The table row of the page that contains `text`."""
    rows = [row for row in re.findall(r"<tr>.*?</tr>", page.text, re.S) if text in row]
    assert len(rows) == 1, f"{len(rows)} rows contain {text!r}"
    return rows[0]


def stat(page: httpx.Response, label: str) -> str:
    found = re.search(
        rf'<div class="label">{re.escape(label)}</div><div class="value">(.*?)</div>', page.text
    )
    assert found, f"no stat {label!r}"
    return found.group(1)


def notice(page: httpx.Response, kind: str) -> str:
    found = re.search(rf'<div class="notice {kind}"[^>]*>(.*?)</div>', page.text, re.S)
    assert found, f"no {kind} notice on the page"
    return re.sub(r"<[^>]+>", "", found.group(1))  # what a reader reads


async def balance_of(db: Database, user: User) -> ledger.Balances:
    async with db.read() as tx:
        return await ledger.balances(tx, user.id)


async def is_active(db: Database, user: User) -> bool:
    async with db.read() as tx:
        found = await tx.get(User, user.id)
        assert found is not None
        return found.is_active


@pytest.fixture
async def operator(browser: httpx.AsyncClient, db: Database, clock: FakeClock) -> User:
    return await sign_in(browser, db, clock=clock, is_admin=True)


@pytest.fixture
async def second_browser(state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as other:
        yield other


async def active_session_with_minutes(
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    *,
    free_minutes: int = 5,
    credit_usd: str = "0",
    upstream_micros_per_hour: int | None = None,
    seconds: int = 180,
) -> str:
    """A user's starter session that really ran `seconds` and was metered; its id."""
    auth = await signed_in_user(
        client, db, clock=clock, free_minutes=free_minutes, credit_usd=credit_usd
    )
    session_id = await launch_active_session(client, state, clock, auth=auth)
    if upstream_micros_per_hour is not None:  # as if a paid provider ran it
        async with db.transaction() as tx:
            await tx.execute(
                update(GpuSession)
                .where(GpuSession.id == session_id)
                .values(upstream_micros_per_hour=upstream_micros_per_hour)
            )
    await run_for(state, clock, seconds=seconds)
    return session_id


# --- who may see them -------------------------------------------------------------------------


async def test_a_user_who_is_not_an_operator_gets_403_everywhere(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await sign_in(browser, db, clock=clock)
    for path in PAGES:
        page = await browser.get(path)
        assert page.status_code == 403, path
        assert "operators" in page.text
    token = csrf_of(await browser.get("/"))
    for action in ("grant", "suspend", "unsuspend", "plan"):
        response = await browser.post(
            f"/admin/users/{user.id}/{action}",
            data={"csrf_token": token, "amount": "5", "plan": "enterprise"},
        )
        assert response.status_code == 403, action
    assert (await balance_of(db, user)).credit_micros == 0
    assert await is_active(db, user)


async def test_signed_out_people_are_sent_to_sign_in(browser: httpx.AsyncClient) -> None:
    for path in PAGES:
        page = await browser.get(path)
        assert page.status_code == 303, path
        assert page.headers["location"] == f"/signin?next={path}"


async def test_operators_see_the_operator_link(browser: httpx.AsyncClient, operator: User) -> None:
    assert 'href="/admin"' in (await browser.get("/sessions")).text


# --- overview ---------------------------------------------------------------------------------


async def test_the_overview_shows_the_demo_provider_healthy_and_live_sessions(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    operator: User,
) -> None:
    await active_session_with_minutes(client, state, clock, db, seconds=60)
    page = await browser.get("/admin")
    assert page.status_code == 200
    demo = row_with(page, "(demo)")
    assert "Healthy" in demo and "Unhealthy" not in demo
    assert "simulated" in demo
    assert stat(page, "Active") == "1"
    assert stat(page, "Pending") == "0"
    assert stat(page, "All not ended") == "1"
    for link in ("/admin/sessions", "/admin/users", "/admin/revenue"):
        assert f'href="{link}"' in page.text


async def test_the_overview_shows_a_provider_that_is_down(
    browser: httpx.AsyncClient,
    state: AppState,
    operator: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def down() -> ProviderHealth:
        return ProviderHealth(healthy=False, detail="the API answers 503")

    monkeypatch.setattr(state.providers["demo"], "health", down)
    demo = row_with(await browser.get("/admin"), "(demo)")
    assert "Unhealthy" in demo and "the API answers 503" in demo


async def test_a_health_check_that_crashes_shows_unhealthy_not_a_500(
    browser: httpx.AsyncClient,
    state: AppState,
    operator: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken() -> ProviderHealth:
        raise RuntimeError("boom")

    monkeypatch.setattr(state.providers["demo"], "health", broken)
    page = await browser.get("/admin")
    assert page.status_code == 200
    assert "Unhealthy" in row_with(page, "(demo)")


async def test_the_overview_says_plainly_which_provider_the_reconciler_cannot_see(
    browser: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    operator: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refused() -> list:
        raise ProviderUnavailable("demo: HTTP 401 invalid API key")

    monkeypatch.setattr(state.providers["demo"], "list_instances", refused)
    for _ in range(2):
        await state.jobs.reconcile_now()
        clock.advance(60)
    assert 'class="notice error"' not in (await browser.get("/admin")).text  # 2 rounds: a blip
    await state.jobs.reconcile_now()
    clock.advance(60)
    blind = notice(await browser.get("/admin"), "error")
    assert "The reconciler cannot see Demo" in blind and "(demo)" in blind
    assert "failed 3 rounds in a row" in blind
    assert "since 2026-03-01 12:00 UTC (3 min 00 s)" in blind
    assert "demo: HTTP 401 invalid API key" in blind
    assert "Last listed: never" in blind
    assert "orphan instances there are not destroyed" in blind


async def test_the_overview_drops_the_warning_once_a_listing_works(
    browser: httpx.AsyncClient, state: AppState, operator: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused() -> list:
        raise ProviderUnavailable("demo: HTTP 503")

    with monkeypatch.context() as patched:
        patched.setattr(state.providers["demo"], "list_instances", refused)
        for _ in range(3):
            await state.jobs.reconcile_now()
    await state.jobs.reconcile_now()
    assert "The reconciler cannot see" not in (await browser.get("/admin")).text


# --- sessions ---------------------------------------------------------------------------------


async def test_the_sessions_list_shows_every_users_session_with_its_provider(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    operator: User,
) -> None:
    session_id = await active_session_with_minutes(client, state, clock, db, seconds=180)
    async with db.read() as tx:
        session = await tx.get(GpuSession, session_id)
        assert session is not None
        owner = await tx.get(User, session.user_id)
        assert owner is not None
    page = await browser.get("/admin/sessions")
    assert page.status_code == 200
    row = row_with(page, f'href="/admin/sessions/{session_id}"')
    for cell in (owner.email, "Starter", "demo", "Running", ">3<", ">$0.00<"):  # 3 free minutes
        assert cell in row, cell


async def test_the_sessions_list_is_paged_newest_first(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    operator: User,
) -> None:
    auth = await signed_in_user(client, db, clock=clock, plan="pro", credit_usd="5")
    made = []
    for _ in range(3):
        made.append(
            (await client.post("/api/v1/sessions", json={"tier": "starter"}, headers=auth)).json()[
                "id"
            ]
        )
        clock.advance(60)
    first = await browser.get("/admin/sessions?limit=2")
    assert made[2] in first.text and made[1] in first.text and made[0] not in first.text
    assert first.text.index(made[2]) < first.text.index(made[1])
    assert "offset=2" in first.text
    second = await browser.get("/admin/sessions?limit=2&offset=2")
    assert made[0] in second.text and made[2] not in second.text


async def test_the_session_page_shows_launch_attempts_and_status_changes(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    operator: User,
) -> None:
    session_id = await active_session_with_minutes(client, state, clock, db, seconds=60)
    async with db.transaction() as tx:
        tx.add(
            LaunchAttempt(
                session_id=session_id,
                provider="vast",
                offer_id="vast-offer-77",
                gpu_type="RTX 4090",
                gpu_count=1,
                upstream_micros_per_hour=345_000,
                outcome="no_capacity",
                error="the offer was taken",
                created_at=clock.now(),
            )
        )
    async with db.read() as tx:
        events = list(
            await tx.scalars(select(SessionEvent).where(SessionEvent.session_id == session_id))
        )
        launched = await tx.scalar(
            select(LaunchAttempt).where(
                LaunchAttempt.session_id == session_id, LaunchAttempt.outcome == "launched"
            )
        )
    assert launched is not None and len(events) >= 3

    page = await browser.get(f"/admin/sessions/{session_id}")

    assert page.status_code == 200
    ok = row_with(page, launched.offer_id)
    assert "demo" in ok and "launched" in ok
    failed = row_with(page, "vast-offer-77")
    for cell in ("vast", "1 × RTX 4090", "$0.345", "no capacity", "the offer was taken"):
        assert cell in failed, cell
    changes = page.text.split("Status changes", 1)[1]
    rows = re.findall(r"<tr>.*?</tr>", changes, re.S)[1:]  # past the header
    assert len(rows) == len(events)
    for row, event in zip(rows, sorted(events, key=lambda e: e.id), strict=True):
        assert f"<td>{event.to_status}</td>" in row
        assert event.actor in row
        assert (event.from_status or "—") in row


async def test_an_unknown_session_is_a_404_page(browser: httpx.AsyncClient, operator: User) -> None:
    for path in (
        "/admin/sessions/0123456789abcdef",
        "/admin/sessions/a%00b",
        "/admin/sessions/" + "x" * 300,
    ):
        page = await browser.get(path)
        assert page.status_code == 404, path
        assert "could not find" in page.text


# --- users: list, grant, suspend ---------------------------------------------------------------


async def test_the_users_page_lists_balances_and_standing_and_searches_by_email(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, operator: User
) -> None:
    rich = await make_user(
        db, now=clock.now(), email="rich_one@example.org", credit_usd="12.5", free_minutes=7
    )
    other = await make_user(db, now=clock.now(), email="other%x@example.net", plan="pro")
    page = await browser.get("/admin/users")
    assert page.status_code == 200
    row = row_with(page, rich.email)
    for cell in ("Free", "$12.50", ">7<", "Active", f"/admin/users/{rich.id}/grant"):
        assert cell in row, cell
    assert "admin" in row_with(page, operator.email)
    found = await browser.get("/admin/users", params={"q": "RICH_"})
    assert rich.email in found.text and other.email not in found.text
    assert operator.email not in found.text
    literal = await browser.get("/admin/users", params={"q": "%"})  # no LIKE wildcard
    assert other.email in literal.text and rich.email not in literal.text
    assert "Pro" in row_with(literal, other.email)


async def test_every_input_has_a_label(browser: httpx.AsyncClient, operator: User) -> None:
    for path in ("/admin/users", "/admin/revenue"):
        page = await browser.get(path)
        ids = re.findall(r'<input id="([^"]+)"', page.text)
        assert ids, path
        for input_id in ids:
            assert f'<label for="{input_id}"' in page.text, input_id
        assert "<th>" not in page.text  # every header cell has a scope


async def test_granting_credit_writes_it_to_the_ledger(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, operator: User
) -> None:
    user = await make_user(db, now=clock.now(), credit_usd="1")
    response = await post_form(
        browser,
        f"/admin/users/{user.id}/grant",
        {"amount": "2.50", "memo": "sorry for the outage"},
        page="/admin/users",
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/users?")
    assert (await balance_of(db, user)).credit_micros == 3_500_000
    async with db.read() as tx:
        entry = await tx.scalar(
            select(LedgerEntry)
            .where(LedgerEntry.user_id == user.id, LedgerEntry.kind == "credit_grant")
            .order_by(LedgerEntry.id.desc())
        )
    assert entry is not None and entry.amount == 2_500_000
    assert entry.memo is not None
    assert operator.email in entry.memo and "sorry for the outage" in entry.memo
    after = await browser.get(response.headers["location"])
    assert f"Granted $2.50 of credit to {user.email}" in notice(after, "ok")
    assert "$3.50" in row_with(after, user.email)


async def test_moving_a_user_to_another_plan_is_audited_and_said(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, operator: User
) -> None:
    user = await make_user(db, now=clock.now())
    moved = await post_form(
        browser, f"/admin/users/{user.id}/plan", {"plan": "pro"}, page="/admin/users"
    )
    assert moved.status_code == 303
    after = await browser.get(moved.headers["location"])
    assert f"{user.email} is on the pro plan now" in notice(after, "ok")
    async with db.read() as tx:
        assert (await tx.get(User, user.id)).plan == "pro"  # type: ignore[union-attr]
        logged = await tx.scalar(
            select(AuditEvent).where(
                AuditEvent.user_id == user.id, AuditEvent.action == "admin.plan_changed"
            )
        )
    assert logged is not None
    assert (logged.actor, logged.detail) == (f"operator:{operator.id}", "free -> pro")

    refused = await post_form(
        browser, f"/admin/users/{user.id}/plan", {"plan": "gold"}, page="/admin/users"
    )
    assert refused.status_code == 422
    assert "There is no plan called “gold”" in notice(refused, "error")


@pytest.mark.parametrize(
    "amount",
    [
        "abc",
        "",
        "0",
        "0.000000",
        "-5",
        "1.0000001",
        "100000.01",
        "99999999999999999999",
        "1e3",
        "NaN",
        "Infinity",
        "1,5",
        "10 USD",
    ],
)
async def test_a_bad_amount_is_shown_on_the_page_and_grants_nothing(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, operator: User, amount: str
) -> None:
    user = await make_user(db, now=clock.now())
    response = await post_form(
        browser, f"/admin/users/{user.id}/grant", {"amount": amount}, page="/admin/users"
    )
    assert response.status_code == 422, response.text
    assert notice(response, "error")
    assert user.email in response.text  # the list is still there to try again
    assert (await balance_of(db, user)).credit_micros == 0


@pytest.mark.parametrize(
    ("amount", "micros"), [("100000", 100_000_000_000), ("$0.000001", 1), (" 7 ", 7_000_000)]
)
async def test_amounts_at_the_edges_are_granted_exactly(
    browser: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    operator: User,
    amount: str,
    micros: int,
) -> None:
    user = await make_user(db, now=clock.now())
    response = await post_form(
        browser, f"/admin/users/{user.id}/grant", {"amount": amount}, page="/admin/users"
    )
    assert response.status_code == 303
    assert (await balance_of(db, user)).credit_micros == micros


async def test_granting_to_an_unknown_user_is_a_404(
    browser: httpx.AsyncClient, operator: User
) -> None:
    response = await post_form(
        browser, "/admin/users/0123456789abcdef/grant", {"amount": "5"}, page="/admin/users"
    )
    assert response.status_code == 404


async def test_a_suspended_user_can_no_longer_sign_in_or_use_the_api(
    browser: httpx.AsyncClient,
    second_browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    operator: User,
) -> None:
    user = await make_user(db, now=clock.now())
    auth = await log_in(client, email=user.email)
    assert (await client.get("/api/v1/auth/me", headers=auth)).status_code == 200

    response = await post_form(
        browser,
        f"/admin/users/{user.id}/suspend",
        {"reason": "acceptable_use", "note": "Crypto mining on a starter GPU"},
        page="/admin/users",
    )

    assert response.status_code == 303
    assert not await is_active(db, user)
    after = await browser.get(response.headers["location"])
    assert "is suspended" in notice(after, "ok")
    assert "Suspended" in row_with(after, user.email)
    assert "Crypto mining on a starter GPU" in row_with(after, user.email)
    # The user is told why, and what to do next: on every API request and at sign-in.
    why = "suspended for breaking the Acceptable Use Policy"
    refused = assert_error(
        await client.get("/api/v1/auth/me", headers=auth), 403, "account_suspended"
    )
    assert why in refused["message"] and "Crypto mining on a starter GPU" in refused["message"]
    login = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}
    )
    assert why in assert_error(login, 403, "account_suspended")["message"]
    page_login = await post_form(
        second_browser, "/signin", {"email": user.email, "password": PASSWORD}
    )
    assert page_login.status_code == 403
    assert why in page_login.text and "Crypto mining on a starter GPU" in page_login.text
    assert "we will look again" in page_login.text
    assert 'href="/legal/acceptable-use"' in page_login.text


async def test_unsuspending_lets_the_user_back_in(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    operator: User,
) -> None:
    user = await make_user(db, now=clock.now())
    await post_form(
        browser, f"/admin/users/{user.id}/suspend", {"reason": "payment"}, page="/admin/users"
    )
    assert f"/admin/users/{user.id}/unsuspend" in (await browser.get("/admin/users")).text
    response = await post_form(
        browser, f"/admin/users/{user.id}/unsuspend", {}, page="/admin/users"
    )
    assert response.status_code == 303
    assert await is_active(db, user)
    auth = await log_in(client, email=user.email)
    assert (await client.get("/api/v1/auth/me", headers=auth)).status_code == 200


async def test_an_operator_cannot_suspend_themself(
    browser: httpx.AsyncClient, db: Database, operator: User
) -> None:
    response = await post_form(
        browser, f"/admin/users/{operator.id}/suspend", {"reason": "other"}, page="/admin/users"
    )
    assert response.status_code == 409
    assert "cannot suspend your own account" in notice(response, "error")
    assert await is_active(db, operator)
    assert (await browser.get("/admin")).status_code == 200


async def test_the_forms_are_refused_without_the_csrf_token(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, operator: User
) -> None:
    user = await make_user(db, now=clock.now())
    await browser.get("/admin/users")
    for action in ("grant", "suspend", "unsuspend"):
        for token in (None, "x" * 40):
            data = {"amount": "5"} | ({"csrf_token": token} if token else {})
            response = await browser.post(f"/admin/users/{user.id}/{action}", data=data)
            assert response.status_code == 403, (action, token)
    assert (await balance_of(db, user)).credit_micros == 0
    assert await is_active(db, user)


# --- revenue ----------------------------------------------------------------------------------


async def test_the_revenue_page_shows_a_days_revenue_cost_and_margin(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
    operator: User,
) -> None:
    # 3 minutes at $0.15: the first paid with a free minute, two with credit ($0.30);
    # upstream $1.80 an hour = $0.03 a minute, for all three ($0.09); margin $0.21.
    await active_session_with_minutes(
        client,
        state,
        clock,
        db,
        free_minutes=1,
        credit_usd="10",
        upstream_micros_per_hour=1_800_000,
        seconds=180,
    )
    page = await browser.get("/admin/revenue")
    assert page.status_code == 200
    day = row_with(page, "2026-03-01")
    cells = re.findall(r'<td class="num">(.*?)</td>', day)
    assert cells == ["2", "1", "$0.30", "$0.00", "$0.09", "$0.21"]  # no plan paid
    assert stat(page, "Revenue") == "$0.30"
    assert stat(page, "Upstream cost") == "$0.09"
    assert stat(page, "Margin") == "$0.21"
    assert stat(page, "Sizzle Lab plans") == "$0.00"
    assert stat(page, "Free and Lab minutes") == "1"


async def test_the_revenue_page_covers_the_days_asked_for(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    state: AppState,
    clock: FakeClock,
    db: Database,
) -> None:
    await active_session_with_minutes(
        client, state, clock, db, free_minutes=0, credit_usd="10", seconds=60
    )
    clock.advance(3 * 86_400)  # now 2026-03-04
    await sign_in(browser, db, clock=clock, is_admin=True)
    four = await browser.get("/admin/revenue?days=4")
    assert "$0.15" in row_with(four, "<td>2026-03-01</td>")
    three = await browser.get("/admin/revenue?days=3")
    assert three.status_code == 200
    assert "<td>2026-03-01</td>" not in three.text
    assert stat(three, "Revenue") == "$0.00"
    for days in ("0", "366", "many"):
        assert (await browser.get(f"/admin/revenue?days={days}")).status_code == 422


async def test_suspending_stops_the_users_running_sessions_billed_to_now(
    browser: httpx.AsyncClient,
    client: httpx.AsyncClient,
    db: Database,
    clock: FakeClock,
    state: AppState,
    operator: User,
) -> None:
    auth = await signed_in_user(client, db, clock=clock)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    clock.advance(70)
    async with db.read() as tx:
        owner = (await tx.get(GpuSession, session_id)).user_id  # type: ignore[union-attr]
    response = await post_form(
        browser, f"/admin/users/{owner}/suspend", {"reason": "security"}, page="/admin/users"
    )
    assert response.status_code == 303
    await state.jobs.meter()
    async with db.read() as tx:
        ended = await tx.get(GpuSession, session_id)
    assert ended is not None
    assert (ended.status, ended.end_reason) == ("terminated", "account_suspended")
    assert ended.charged_minutes == 2  # 70 s of use: two started minutes, and no more
    clock.advance(600)
    await state.jobs.meter()
    async with db.read() as tx:
        assert (await tx.get(GpuSession, session_id)).charged_minutes == 2  # type: ignore[union-attr]
