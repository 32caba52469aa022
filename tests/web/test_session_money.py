"""Money on the session pages, told one way (domain/charges.py): what free minutes, Sizzle Lab
minutes and credit paid, apart; never free time as dollars; live figures for the next minute."""

from __future__ import annotations

import re

import httpx

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import GpuSession
from sizzle.services.ledger import Balances
from sizzle.state import AppState
from sizzle.web.routes.sessions import money_of
from tests.helpers import act, launch_active_session, log_in, run_for
from tests.web.pages import sign_in


async def active_session(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState, **money: object
) -> tuple[str, dict[str, str]]:
    user = await sign_in(browser, db, clock=clock, **money)  # type: ignore[arg-type]
    auth = await log_in(browser, email=user.email)
    return await launch_active_session(browser, state, clock, auth=auth), auth


def figure(page: httpx.Response, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page.text)
    assert found, f"no #{element_id}"
    return found.group(1).strip()


async def test_the_live_page_shows_free_minutes_as_free(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    session_id, _ = await active_session(browser, db, clock, state, free_minutes=5)
    await run_for(state, clock, seconds=90)
    page = await browser.get(f"/sessions/{session_id}")
    assert figure(page, "minutes") == "2"
    assert figure(page, "charged") == "$0.00"
    assert figure(page, "charges-text") == "2 free minutes used · $0.00 charged"
    assert figure(page, "credit") == "$0.00"
    assert figure(page, "free-left") == "3 free minutes left"
    assert "$0.30" not in page.text  # the list price of two minutes is nowhere


async def test_the_summary_and_history_tell_free_and_credit_apart(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    session_id, auth = await active_session(
        browser, db, clock, state, free_minutes=2, credit_usd="1"
    )
    await run_for(state, clock, seconds=150)
    await act(browser, auth=auth, session_id=session_id, action="stop")
    summary = await browser.get(f"/sessions/{session_id}")
    assert "2 free minutes used · $0.15 charged for 1 minute" in summary.text
    assert "$0.45" not in summary.text
    history = await browser.get("/sessions")
    assert figure(history, "total-charged") == "$0.15"
    assert "2 free min" in history.text and "$0.45" not in history.text


async def test_the_low_credit_warning_is_on_the_page_for_the_events_to_show(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    session_id, _ = await active_session(browser, db, clock, state, free_minutes=0, credit_usd="3")
    page = await browser.get(f"/sessions/{session_id}")
    assert re.search(r'id="low-credit"[^>]*hidden', page.text)  # 20 minutes left: not low
    assert '<script type="application/json" id="money-data">' in page.text


async def test_the_next_minute_is_projected_as_metering_will_charge_it(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    session_id, _ = await active_session(
        browser, db, clock, state, free_minutes=1, credit_usd="0.20"
    )
    async with db.read() as tx:
        session = await tx.get(GpuSession, session_id)
    assert session is not None
    money = money_of(session, Balances(free_minutes=1, credit_micros=200_000))
    assert money["now"]["charged_minutes"] == 0 and money["now"]["minutes_left"] == 2
    assert money["next"] == {
        **money["now"],
        "charged_minutes": 1,
        "paid_with": "1 free min",
        "text": "1 free minute used · $0.00 charged",
        "free_left": "0 free minutes left",
        "minutes_left": 1,
    }
    await run_for(state, clock, seconds=61)  # minute 1 free, minute 2 from credit
    async with db.read() as tx:
        session = await tx.get(GpuSession, session_id)
    assert session is not None
    money = money_of(session, Balances(free_minutes=0, credit_micros=50_000))
    assert money["now"]["text"] == "1 free minute used · $0.15 charged for 1 minute"
    assert money["now"]["credit_left"] == "$0.05" and money["now"]["low"] is True
    assert money["next"] is None  # nothing pays a third minute: the session stops at 2


async def test_the_operator_sees_what_credit_paid_not_the_list_price(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    session_id, _ = await active_session(browser, db, clock, state, free_minutes=5)
    await run_for(state, clock, seconds=90)
    browser.cookies.clear()
    await sign_in(browser, db, clock=clock, is_admin=True)
    page = await browser.get(f"/admin/sessions/{session_id}")
    assert "2 free minutes used · $0.00 charged" in page.text and "$0.30" not in page.text
    listed = await browser.get("/admin/sessions")
    assert 'title="2 free minutes used · $0.00 charged">$0.00<' in listed.text
