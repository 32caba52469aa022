"""Idle auto-stop on the pages: the wizard's choice (default, never, a refused value), the confirm
step and the live page say it, "Keep it running" works as a form and for the page's script, a
page paused for idleness says why, the operator's overview and /metrics count idle stops, and
the live-page watcher marks the open pages seen in one statement."""

from __future__ import annotations

import re

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, select

from sizzle.clock import FakeClock, to_ms
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, Notification
from sizzle.services.session_watch import SessionWatcher
from sizzle.state import AppState
from tests.helpers import make_user
from tests.web.pages import csrf_of, post_form, sign_in
from tests.web.test_sessions_pages import launch_demo

MINUTE = 60


async def _running(browser: httpx.AsyncClient, state: AppState, clock: FakeClock, **limits: str):
    session_id = await launch_demo(browser, **limits)
    await state.jobs.run_once()
    clock.advance(state.settings.demo_provision_seconds)
    await state.jobs.run_once()
    page = f"/sessions/{session_id}"
    started = await post_form(browser, f"{page}/start", {}, page=page)
    assert started.status_code == 303
    return session_id


async def _idle_of(db: Database, session_id: str) -> int | None:
    async with db.read() as tx:
        session = await tx.get(GpuSession, session_id)
    assert session is not None
    return session.idle_minutes


async def test_the_limits_step_offers_the_idle_choices_with_the_default_chosen(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    page = await browser.get("/launch?step=options&tier=starter&model=none")
    chosen = re.findall(r'name="idle" value="(\w+)"( checked)?', page.text)
    assert chosen == [("5", ""), ("15", " checked"), ("30", ""), ("60", ""), ("never", "")]
    assert "Working only in a terminal over SSH does not count as use" in page.text


async def test_the_confirm_step_says_the_idle_limit_and_the_launch_keeps_it(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    confirm = await browser.get("/launch?step=confirm&tier=starter&idle=30")
    assert "Paused after 30 minutes without use" in confirm.text
    assert 'name="idle" value="30"' in confirm.text
    assert await _idle_of(db, await launch_demo(browser, idle="30")) == 30


async def test_never_is_a_choice_and_says_so(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    confirm = await browser.get("/launch?step=confirm&tier=starter&idle=never")
    assert "Never paused for being unused" in confirm.text
    assert await _idle_of(db, await launch_demo(browser, idle="never")) is None


async def test_an_idle_limit_not_offered_goes_back_to_the_limits_saying_why(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    page = await browser.get("/launch?step=confirm&tier=starter&idle=7")
    assert page.status_code == 422
    assert 'name="max_minutes"' in page.text  # the limits step, not the confirm step
    assert "An idle limit is 5, 15, 30 or 60 minutes, or never" in page.text
    posted = await browser.post(
        "/launch", data={"tier": "starter", "idle": "7", "csrf_token": csrf_of(page)}
    )
    assert posted.status_code == 422
    assert "/sessions/" not in posted.headers.get("location", "")


async def test_the_live_page_carries_the_countdown_and_keep_it_running_resets_it(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="5")
    session_id = await _running(browser, state, clock)
    clock.advance(13 * MINUTE + 30)
    page = await browser.get(f"/sessions/{session_id}")
    assert 'data-idle-seconds-left="90.0"' in page.text
    assert "Pauses by itself after 15 minutes without use" in page.text
    assert 'id="idle-warning"' in page.text and "Keep it running" in page.text
    kept = await browser.post(
        f"/sessions/{session_id}/keep-alive",
        headers={"X-CSRF-Token": csrf_of(page), "Accept": "application/json"},
    )
    assert kept.status_code == 200, kept.text
    assert kept.json()["idle_seconds_left"] == 900
    as_form = await post_form(browser, f"/sessions/{session_id}/keep-alive", {}, page=page.url.path)
    assert (as_form.status_code, as_form.headers["location"]) == (303, f"/sessions/{session_id}")
    refused = await browser.post(f"/sessions/{session_id}/keep-alive")  # no CSRF token
    assert refused.status_code == 403


async def test_a_page_paused_for_idleness_says_why(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="5")
    session_id = await _running(browser, state, clock)
    clock.advance(15 * MINUTE)
    await state.jobs.housekeep()
    page = await browser.get(f"/sessions/{session_id}")
    assert "Sizzle paused it because nobody used it for 15 minutes" in page.text
    resumed = await post_form(browser, f"/sessions/{session_id}/resume", {}, page=page.url.path)
    assert resumed.status_code == 303
    clock.advance(MINUTE)
    await post_form(browser, f"/sessions/{session_id}/pause", {}, page=f"/sessions/{session_id}")
    paused_by_me = await browser.get(f"/sessions/{session_id}")
    assert "nobody used it" not in paused_by_me.text


async def test_the_overview_and_metrics_count_idle_stops(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="5")
    await _running(browser, state, clock, idle="5")
    clock.advance(5 * MINUTE)
    await state.jobs.housekeep()
    scraped = (await browser.get("/metrics")).text
    counted = {
        sample.labels["action"]: sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == "sizzle_idle_stops_total"
    }
    assert counted == {"paused": 1, "stopped": 0}
    admin = await make_user(db, now=clock.now(), is_admin=True)
    await browser.post("/signout", data={"csrf_token": csrf_of(await browser.get("/sessions"))})
    await post_form(browser, "/signin", {"email": admin.email, "password": "correct horse battery"})
    overview = await browser.get("/admin")
    box = overview.text[overview.text.index('id="idle-stops"') :]
    assert re.search(r"Paused today</div><div class=\"value\">1<", box), box[:400]


async def test_the_watcher_marks_every_open_page_seen_in_one_statement(
    db: Database, clock: FakeClock, state: AppState, browser: httpx.AsyncClient
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="5")
    session_id = await _running(browser, state, clock)
    watcher = SessionWatcher.manual(db, clock, max_streams_per_user=50)
    owner = await _owner(db, session_id)
    for _ in range(3):
        await watcher.watch(session_id, user_id=owner, page=True)
    await watcher.watch(session_id, user_id=owner)  # an API stream: not a page
    statements: list[str] = []

    def count(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        if sql.lstrip().upper().startswith("UPDATE"):
            statements.append(sql)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        await watcher.tick()
        await watcher.tick()  # marked already in this period: nothing written
        clock.advance(20)
        await watcher.tick()  # a new period: marked again
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 2 and watcher.marks == 2
    async with db.read() as tx:
        seen = await tx.scalar(select(GpuSession.page_seen_ms).where(GpuSession.id == session_id))
    assert seen == to_ms(clock.now())


async def _owner(db: Database, session_id: str) -> str:
    async with db.read() as tx:
        session = await tx.get(GpuSession, session_id)
    assert session is not None
    return session.user_id


async def test_a_warning_the_open_page_shows_is_not_mailed_as_well(
    db: Database, clock: FakeClock, state: AppState, browser: httpx.AsyncClient
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="5")
    session_id = await _running(browser, state, clock)
    watcher = SessionWatcher.manual(db, clock, max_streams_per_user=5)
    await watcher.watch(session_id, user_id=await _owner(db, session_id), page=True)
    clock.advance(13 * MINUTE)
    await watcher.tick()  # the page is still open
    await state.jobs.housekeep()
    async with db.read() as tx:
        (warning,) = await tx.scalars(
            select(Notification).where(
                Notification.session_id == session_id, Notification.kind == "idle_warning"
            )
        )
    assert (warning.kind, warning.mail_status) == ("idle_warning", "off")
