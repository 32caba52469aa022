"""The launch wizard keeps no surprise about money: limits read in the user's own number style
and checked on the server, the recommended model chosen first, one launch per confirm form,
the plan and the money said at the first step, demo mode said everywhere."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.web.pages import csrf_of, sign_in

LAUNCH_FORM = 'method="post" action="/launch"'


def _form_fields(page: httpx.Response) -> dict[str, str]:
    """The hidden fields of the confirm step's launch form."""
    form = page.text[page.text.index(LAUNCH_FORM) :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))


async def _sessions_of(browser: httpx.AsyncClient) -> int:
    return len(set(re.findall(r"/sessions/([0-9a-f]{32})", (await browser.get("/sessions")).text)))


# --- limits (finding 1) ----------------------------------------------------------------------


@pytest.mark.parametrize("cap", ["2.50", "2,50", "$2.50", " $ 2,5 "])
async def test_a_cap_in_the_users_own_style_is_read_and_shown_in_minutes(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, cap: str
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="10")
    page = await browser.get(
        "/launch", params={"step": "confirm", "tier": "starter", "spend_cap": cap}
    )
    assert page.status_code == 200, page.text
    assert "Stops after 16 minutes, at most $2.40 (your cap: $2.50)" in page.text
    assert _form_fields(page)["spend_cap"] == "2.50"


@pytest.mark.parametrize(
    ("cap", "words"),
    [
        ("five dollars", "is not an amount of money"),
        ("0.01", "The smallest spending cap here is $0.15"),
        ("1,000", "could mean 1000 dollars or 1.00 dollars"),
    ],
)
async def test_confirm_with_a_cap_that_cannot_be_used_goes_back_to_the_limits(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, cap: str, words: str
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="10")
    page = await browser.get(
        "/launch", params={"step": "confirm", "tier": "starter", "spend_cap": cap}
    )
    assert page.status_code == 422
    assert words in page.text
    assert LAUNCH_FORM not in page.text  # no Launch button beside the error
    assert 'aria-current="step">3. Limits' in page.text
    assert 'aria-invalid="true"' in page.text


async def test_a_launch_posted_with_a_bad_cap_is_refused_and_makes_nothing(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="10")
    page = await browser.get("/launch?step=confirm&tier=starter")
    response = await browser.post(
        "/launch",
        data={"tier": "starter", "spend_cap": "five dollars", "csrf_token": csrf_of(page)},
    )
    assert response.status_code == 422
    assert "is not an amount of money" in response.text
    assert await _sessions_of(browser) == 0


async def test_the_limits_step_says_what_the_limits_come_to_as_they_are_typed(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="10")
    preview = await browser.get("/launch/limits?tier=starter&spend_cap=2,50")
    assert "pays for <strong>16 minutes</strong>" in preview.text
    both = await browser.get("/launch/limits?tier=starter&spend_cap=2,50&max_minutes=10")
    assert "<strong>10 minutes</strong> cost at most $1.50" in both.text
    wrong = await browser.get("/launch/limits?tier=starter&spend_cap=0.01")
    assert "smallest spending cap here is $0.15" in wrong.text
    page = await browser.get("/launch?step=options&tier=starter")
    assert 'hx-get="/launch/limits"' in page.text and 'id="limits-preview"' in page.text


# --- one launch per form (finding 6) ---------------------------------------------------------


async def test_a_launch_sent_twice_leads_to_the_one_session_it_made(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)  # the free plan: one session at a time
    page = await browser.get("/launch?step=confirm&tier=starter&max_minutes=30")
    fields = {**_form_fields(page), "csrf_token": csrf_of(page)}
    first = await browser.post("/launch", data=fields)
    second = await browser.post("/launch", data=fields)  # a double click, or a reload
    assert (first.status_code, second.status_code) == (303, 303), second.text
    assert first.headers["location"] == second.headers["location"]
    assert await _sessions_of(browser) == 1


async def test_each_confirm_page_carries_its_own_one_time_key(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    one = _form_fields(await browser.get("/launch?step=confirm&tier=starter"))["form_key"]
    two = _form_fields(await browser.get("/launch?step=confirm&tier=starter"))["form_key"]
    assert one and two and one != two


# --- the model step recommends (finding 4) ---------------------------------------------------


async def test_the_model_step_opens_on_the_recommended_model(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    page = await browser.get("/launch?step=model&tier=starter")
    checked = re.findall(r'name="model" value="([^"]+)" checked', page.text)
    assert checked and checked[0] != "none", checked
    assert "Best pick" in page.text and "Search the library" in page.text
    assert "should run on your <strong>starter</strong> GPU?" in page.text  # as the notices say
    coding = await browser.get("/launch?step=model&tier=starter&task=code")
    pick = re.findall(r'name="model" value="([^"]+)" checked', coding.text)[0]
    assert pick in {"devstral-24b", "qwen2.5-coder-14b", "codestral-22b"}, pick


async def test_a_model_already_chosen_stays_chosen_and_no_model_is_a_choice(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    page = await browser.get("/launch?step=model&tier=starter&model=llama3.1-8b&q=llama")
    assert re.findall(r'name="model" value="([^"]+)" checked', page.text) == ["llama3.1-8b"]
    none = await browser.get("/launch?step=model&tier=starter&model=none")
    assert re.findall(r'name="model" value="([^"]+)" checked', none.text) == ["none"]


# --- money and plans at the first step (finding 7) -------------------------------------------


async def test_with_no_money_the_first_step_says_so_and_offers_credit(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock, free_minutes=0)
    page = await browser.get("/launch")
    assert "no free minutes and no credit left" in page.text
    assert 'href="/billing"' in page.text
    assert "Next: choose a model" not in page.text


async def test_a_tier_outside_the_plan_says_which_plans_have_it_and_links_to_them(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)
    page = await browser.get("/launch")
    assert "Not in your Free plan" in page.text
    assert "In the Pro and Enterprise plans" in page.text and 'href="/plans"' in page.text
    landing = await browser.get("/")
    ultra = landing.text[landing.text.index('<h3 style="margin:0">Ultra') :]
    assert "Not in your Free plan" in ultra[:400] and "Available now" not in ultra[:400]
    plans = await browser.get("/plans")
    assert plans.status_code == 200
    assert "Your plan" in plans.text and "Changing your plan" in plans.text


# --- demo mode (finding 3) -------------------------------------------------------------------


async def test_demo_mode_is_said_on_the_landing_page_the_wizard_and_the_live_page(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    sentence = "no real GPU or model runs"
    assert sentence in (await browser.get("/")).text
    await sign_in(browser, db, clock=clock)
    for path in ("/launch", "/launch?step=model&tier=starter", "/launch?step=confirm&tier=starter"):
        page = await browser.get(path)
        assert 'class="badge demo"' in page.text and sentence in page.text, path
    confirm = await browser.get("/launch?step=confirm&tier=starter")
    launched = await browser.post(
        "/launch", data={**_form_fields(confirm), "csrf_token": csrf_of(confirm)}
    )
    live = await browser.get(launched.headers["location"])
    assert 'class="badge demo"' in live.text and sentence in live.text


async def test_without_the_demo_provider_nothing_says_demo(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    node = {
        "name": "box",
        "url": "http://127.0.0.1:9",
        "gpu": "RTX 4090",
        "gpu_count": 1,
        "vram_gb": 24,
        "price_per_hour_usd": "0.30",
    }
    real = settings.model_copy(update={"providers": "ollama", "ollama_nodes": json.dumps([node])})
    app = create_app(state=AppState.build(real, clock=clock, db=db), run_jobs=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://sizzle.test"
    ) as client:
        landing = await client.get("/")
    assert landing.status_code == 200
    assert "badge demo" not in landing.text and "Demo mode" not in landing.text


async def test_a_refusal_reads_as_a_sentence_with_the_next_step(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    busy = settings.model_copy(update={"demo_capacity": 0})
    app = create_app(state=AppState.build(busy, clock=clock, db=db), run_jobs=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://sizzle.test"
    ) as client:
        await sign_in(client, db, clock=clock)
        confirm = await client.get("/launch?step=confirm&tier=starter")
        refused = await client.post(
            "/launch", data={**_form_fields(confirm), "csrf_token": csrf_of(confirm)}
        )
    assert refused.status_code == 503
    assert "No starter GPU is free right now; try another tier or later." in refused.text
    assert "Try another tier" in refused.text


async def test_a_second_launch_past_the_plan_links_to_the_session_running(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock)  # the free plan: one session at a time
    first = await browser.get("/launch?step=confirm&tier=starter")
    made = await browser.post("/launch", data={**_form_fields(first), "csrf_token": csrf_of(first)})
    other = await browser.get("/launch?step=confirm&tier=pro")  # another tab, another form
    refused = await browser.post(
        "/launch", data={**_form_fields(other), "csrf_token": csrf_of(other)}
    )
    assert refused.status_code == 409
    assert f'<a href="{made.headers["location"]}">Go to your running session</a>' in refused.text


async def test_the_plans_page_says_where_to_ask_for_another_plan(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    here = settings.model_copy(update={"support_email": "help@sizzle.example"})
    app = create_app(state=AppState.build(here, clock=clock, db=db), run_jobs=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://sizzle.test"
    ) as client:
        page = await client.get("/plans")
    assert page.status_code == 200
    assert 'href="mailto:help@sizzle.example?subject=Change%20my%20plan"' in page.text
