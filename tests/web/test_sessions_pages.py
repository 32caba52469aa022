"""Session pages: history, the launch wizard, the live page and its actions, the page's chat."""

from __future__ import annotations

import re

import httpx

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.state import AppState
from tests.web.pages import csrf_of, post_form, sign_in


async def launch_demo(
    browser: httpx.AsyncClient, *, tier: str = "starter", model: str = "", **limits: str
) -> str:
    """Through the wizard's confirm step; the new session's id."""
    query = "&".join(f"{k}={v}" for k, v in {"tier": tier, "model": model, **limits}.items() if v)
    confirm = await browser.get(f"/launch?step=confirm&{query}")
    assert confirm.status_code == 200, confirm.text
    response = await browser.post(
        "/launch",
        data={"tier": tier, "model": model, "csrf_token": csrf_of(confirm), **limits},
    )
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/sessions/([0-9a-f]{32})", response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


async def test_the_wizard_walks_tier_model_limits_confirm(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    tiers = await browser.get("/launch")
    assert tiers.status_code == 200
    assert 'value="starter"' in tiers.text and "Available now" in tiers.text
    assert "Not in your Free plan" in tiers.text  # ultra
    models = await browser.get("/launch?step=model&tier=starter&q=llama")
    assert "Fits this tier" in models.text and "Needs a bigger tier (beast)" in models.text
    options = await browser.get("/launch?step=options&tier=starter&model=llama3.1-8b")
    assert 'name="max_minutes"' in options.text and 'name="spend_cap"' in options.text
    confirm = await browser.get(
        "/launch?step=confirm&tier=starter&model=llama3.1-8b&max_minutes=30&spend_cap=1.50"
    )
    text = confirm.text
    assert "$0.15 per minute" in text
    assert "5 free minutes first" in text
    assert "about 5 minutes" in text  # 5 free minutes and no credit
    assert "Stops after 10 minutes, at most $1.50" in text  # $1.50 at $0.15, under 30 min


async def test_launching_goes_to_the_live_page_which_moves_to_ready(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    await sign_in(browser, db, clock=clock)
    session_id = await launch_demo(browser, model="llama3.1-8b", max_minutes="20")
    page = await browser.get(f"/sessions/{session_id}")
    assert "Finding a GPU for you" in page.text
    assert 'role="progressbar"' in page.text
    await state.jobs.run_once()
    clock.advance(state.settings.demo_provision_seconds)
    await state.jobs.run_once()
    ready = await browser.get(f"/sessions/{session_id}")
    assert "Your GPU is ready" in ready.text
    assert f'action="/sessions/{session_id}/start"' in ready.text
    started = await post_form(
        browser, f"/sessions/{session_id}/start", {}, page=f"/sessions/{session_id}"
    )
    assert started.status_code == 303
    active = await browser.get(f"/sessions/{session_id}")
    assert "Your GPU is running" in active.text
    assert "demo session" in active.text  # the workspace says plainly there is no model
    clock.advance(125)
    await state.jobs.meter()
    stopped = await post_form(
        browser, f"/sessions/{session_id}/stop", {}, page=f"/sessions/{session_id}"
    )
    assert stopped.status_code == 303
    summary = await browser.get(f"/sessions/{session_id}")
    assert "Summary" in summary.text and "You stopped it." in summary.text
    assert "2 min 05 s" in summary.text  # 3 started minutes, all paid with free minutes:
    assert "3 free minutes used · $0.00 charged" in summary.text and "$0.45" not in summary.text
    history = await browser.get("/sessions")
    assert f"/sessions/{session_id}" in history.text and "3 free min" in history.text
    assert "$0.45" not in history.text


async def test_out_of_credit_the_confirm_step_offers_to_add_credit(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock, free_minutes=0)
    confirm = await browser.get("/launch?step=confirm&tier=starter")
    assert "not even one minute" in confirm.text
    assert 'href="/billing"' in confirm.text
    refused = await browser.post(
        "/launch", data={"tier": "starter", "csrf_token": csrf_of(confirm)}
    )
    assert refused.status_code == 402
    assert "Add credit" in refused.text


async def test_a_model_too_big_for_the_tier_sends_you_back_to_the_model_step(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    page = await browser.get("/launch?step=confirm&tier=starter&model=llama3.3-70b")
    assert page.status_code == 422
    assert "smallest tier that fits it is beast" in page.text


async def test_bad_limits_are_explained(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    page = await browser.get("/launch?step=confirm&tier=starter&max_minutes=²&spend_cap=lots")
    assert page.status_code == 422
    assert "whole number of minutes" in page.text and "not an amount of money" in page.text
    assert 'method="post" action="/launch"' not in page.text  # no Launch: back to the limits


async def test_someone_elses_session_page_is_a_404(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    session_id = await launch_demo(browser)
    browser.cookies.clear()
    await sign_in(browser, db, clock=clock)
    for path in (f"/sessions/{session_id}", f"/sessions/{session_id}/metrics.json"):
        assert (await browser.get(path)).status_code == 404, path


async def test_session_actions_need_the_csrf_token(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    session_id = await launch_demo(browser)
    refused = await browser.post(f"/sessions/{session_id}/stop")
    assert refused.status_code == 403
    assert (await browser.post("/launch", data={"tier": "starter"})).status_code == 403
    chat = await browser.post(
        f"/sessions/{session_id}/chat", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert chat.status_code == 403


async def test_a_model_is_called_by_its_library_name_on_every_page(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    session_id = await launch_demo(browser, model="llama3.1-8b")
    live = await browser.get(f"/sessions/{session_id}")
    assert "Starter GPU · Llama 3.1 8B" in live.text
    assert "Chat with Llama 3.1 8B" in live.text
    history = await browser.get("/sessions")
    assert "Llama 3.1 8B" in history.text
    for page in (live, history):
        assert "llama3.1:8b" not in page.text and "llama3.1-8b" not in page.text
