"""End to end in a real browser: Debian's chromium, driven by Playwright, against Sizzle served
over loopback HTTP. A newcomer signs up, launches a demo GPU through the wizard, watches it
become ready and run (timer and cost move), stops it and reads the summary and the history;
someone out of credit is shown the way to add some. Screenshots of the main pages are saved
to SIZZLE_SCREENSHOTS (default `artifacts/screenshots/`).

Time on the server is the test's fake clock: the test moves it and runs the jobs, and the page
sees the changes through its server-sent events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.e2e.browser import (  # noqa: F401 - also for the other journeys
    CHROMIUM,
    SHOTS,
    WAIT_MS,
    needs_chromium,
    playwright_api,
    shot,
)
from tests.helpers import PASSWORD, fresh_email, mailed_token, make_user, serve_here
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.server import serve

pytestmark = needs_chromium


@pytest.fixture
async def site(state: AppState) -> AsyncIterator[str]:
    async with serve_here(create_app(state=state, run_jobs=False)) as url:
        yield url


@pytest.fixture
async def page(site: str) -> AsyncIterator[object]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        context = await browser.new_context(base_url=site, viewport={"width": 1200, "height": 900})
        tab = await context.new_page()
        tab.set_default_timeout(WAIT_MS)
        yield tab
        await browser.close()


async def test_a_newcomer_launches_watches_and_stops_a_demo_gpu(
    page: playwright_api.Page, state: AppState, clock: FakeClock
) -> None:
    expect = playwright_api.expect
    await page.goto("/")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("serious GPU")
    await shot(page, "01-landing")

    await page.get_by_role("link", name="Start with 5 free minutes").click()
    address = fresh_email()
    await page.get_by_label("Email").fill(address)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("checkbox", name="I accept the Terms of Service").check()
    await page.get_by_role("button", name="Create account").click()
    # The free minutes come with the confirmed address: the newcomer opens the mailed link.
    await expect(page.get_by_text("One step left: confirm your email")).to_be_visible()
    await page.goto(f"/verify-email?token={mailed_token(state, address, '/verify-email')}")
    await page.get_by_role("button", name="Confirm my email").click()
    await page.get_by_role("link", name="Launch a GPU").last.click()
    await expect(page).to_have_url(f"{page.url.split('/launch')[0]}/launch")
    await shot(page, "02-wizard-tier")

    await page.locator("label.choice", has_text="Starter").click()
    await page.get_by_role("button", name="Next: choose a model").click()
    await page.get_by_label("Search the library").fill("llama 3.1")
    await page.get_by_role("button", name="Search").click()
    await page.locator("label.choice", has_text="Llama 3.1 8B").click()
    await shot(page, "03-wizard-model")
    await page.get_by_role("button", name="Next: limits").click()
    await page.get_by_label("Time limit").fill("30")
    await page.get_by_role("button", name="Next: confirm").click()
    await expect(page.get_by_text("$0.15 per minute")).to_be_visible()
    await shot(page, "04-wizard-confirm")
    await page.get_by_role("button", name="Launch").click()

    status = page.locator("#status-words")
    await expect(status).to_have_text("Finding a GPU for you…")
    await shot(page, "05-live-finding")
    await state.jobs.run_once()
    clock.advance(state.settings.demo_provision_seconds)
    await state.jobs.run_once()
    await expect(status).to_contain_text("Your GPU is ready")  # the page heard it and reloaded

    await page.get_by_role("button", name="Start").click()
    await expect(status).to_have_text("Your GPU is running.")
    await expect(page.locator("#chat-unavailable")).to_contain_text("demo session")
    clock.advance(90)
    await state.jobs.meter()
    await expect(page.locator("#minutes")).to_have_text("2")  # pushed by the events stream
    await expect(page.locator("#charged")).to_have_text("$0.00")  # two free minutes
    await expect(page.locator("#timer")).not_to_have_text("0 s")
    await shot(page, "06-live-running")

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Stop").click()
    summary = page.locator("#summary")
    await expect(summary).to_contain_text("You stopped it.")
    await expect(summary).to_contain_text("2 free minutes used · $0.00 charged")
    await shot(page, "07-summary")

    await page.get_by_role("link", name="All my sessions").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("My sessions")
    await expect(page.locator("table")).to_contain_text("Llama 3.1 8B")  # its name, not its tag
    await shot(page, "08-history")

    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    for path, name in (("/", "12-phone-landing"), ("/launch", "13-phone-wizard")):
        await page.goto(path)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways on a phone by {overflow}px"
        await shot(page, name)


async def test_someone_out_of_credit_is_shown_how_to_add_some(
    page: playwright_api.Page, db: Database, clock: FakeClock
) -> None:
    expect = playwright_api.expect
    user = await make_user(db, now=clock.now(), free_minutes=0)
    await page.goto("/signin")
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.goto("/launch?step=confirm&tier=starter")
    await expect(page.get_by_text("not even one minute")).to_be_visible()
    await shot(page, "09-out-of-credit")
    await page.get_by_role("link", name="Add credit").last.click()
    await expect(page).to_have_url(f"{page.url.split('/billing')[0]}/billing")
    await shot(page, "10-billing")


@pytest.fixture
def node() -> Iterator[tuple[FakeOllama, str]]:
    fake = FakeOllama(
        registry={"llama3.1:8b": 2_000},
        reply=["Here", " is", " code:\n\n", "```python\n", "print('hi')\n", "```\n"],
        chat_token_seconds=0.05,
    )
    with serve(fake_ollama_app(fake)) as url:
        yield fake, url


def fake_node_agent() -> FastAPI:
    """What `sizzle node-agent` answers on a node with one busy RTX 4090 (a test stand-in)."""
    app = FastAPI()

    @app.get("/metrics")
    async def metrics() -> dict[str, object]:
        gpu = {
            "index": 0,
            "name": "NVIDIA GeForce RTX 4090",
            "utilization_gpu_percent": 42,
            "memory_used_bytes": 12 * 1024**3,
            "memory_total_bytes": 24 * 1024**3,
            "temperature_c": 61,
            "power_watts": 280.5,
        }
        return {"driver": "550.54", "gpus": [gpu], "error": None}

    return app


@pytest.fixture
def agent() -> Iterator[str]:
    with serve(fake_node_agent()) as url:
        yield url


@pytest.fixture
def ollama_state(
    settings: Settings, clock: FakeClock, db: Database, node: tuple[FakeOllama, str], agent: str
) -> AppState:
    box = {
        "name": "box-1",
        "url": node[1],
        "agent_url": agent,
        "gpu": "NVIDIA GeForce RTX 4090",
        "gpu_count": 1,
        "vram_gb": 24,
        "price_per_hour_usd": "0.30",
    }
    update = {"providers": "ollama", "ollama_nodes": json.dumps([box])}
    return AppState.build(settings.model_copy(update=update), clock=clock, db=db)


async def test_chatting_with_the_model_in_the_browser(
    ollama_state: AppState, db: Database, clock: FakeClock, node: tuple[FakeOllama, str]
) -> None:
    expect = playwright_api.expect
    fake, _ = node
    user = await make_user(db, now=clock.now())
    async with (
        serve_here(create_app(state=ollama_state, run_jobs=False)) as site,
        playwright_api.async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        page = await (await browser.new_context(base_url=site)).new_page()
        page.set_default_timeout(WAIT_MS)
        await page.goto("/signin")
        await page.get_by_label("Email").fill(user.email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await page.goto("/launch?step=confirm&tier=starter&model=llama3.1-8b")
        await page.get_by_role("button", name="Launch").click()
        for _ in range(3):
            await ollama_state.jobs.run_once()
        await expect(page.locator("#status-words")).to_contain_text("Your GPU is ready")
        await page.get_by_role("button", name="Start").click()
        await expect(page.locator("#gpu-util-now")).to_have_text("42 %")  # the node's NVML reading
        await expect(page.locator("#gpu-mem-now")).to_have_text("50 %")
        await expect(page.locator("#gpu-charts")).to_be_visible()

        await page.get_by_label("Your message").fill("Show me some Python")
        await page.get_by_role("button", name="Send").click()
        answer = page.locator(".msg.assistant").last
        await expect(answer.locator("pre code")).to_have_text("print('hi')")  # Markdown rendered
        await expect(answer.locator(".meta")).to_contain_text("first token after")
        await expect(answer.locator(".meta")).to_contain_text("tokens/s")
        await shot(page, "11-chat")

        fake.chat_endless = True
        await page.get_by_label("Your message").fill("Go on forever")
        await page.get_by_role("button", name="Send").click()
        await expect(page.locator(".msg.assistant").last).to_contain_text("more")
        await page.get_by_role("button", name="Stop generating").click()
        await expect(page.locator(".msg.assistant").last.locator(".meta")).to_contain_text(
            "stopped"
        )
        for _ in range(500):  # the node hears the cut within moments
            if fake.chat_cut_off.is_set():
                break
            await asyncio.sleep(0.01)
        assert fake.chat_cut_off.is_set()

        # Hostile words and answers stay text, or Markdown made safe, live and once saved.
        fake.chat_endless = False
        fake.reply = ['<img src=x onerror="window.pwned=1">', "[click](javascript:window.pwned=2)"]
        hostile = '<img src=x onerror="window.pwned=3"> what?'
        # the first chat's last writes land before the clock moves: the newer chat lists first
        await ollama_state.chat_proxy.saver.flush()
        clock.advance(5)
        await page.get_by_role("button", name="New chat").click()
        await page.get_by_label("Your message").fill(hostile)
        await page.get_by_role("button", name="Send").click()
        await expect(page.locator(".msg.assistant").last.locator(".meta")).to_contain_text("ms")
        await ollama_state.chat_proxy.saver.flush()
        # A reload opens the chat again, from what the server saved.
        await page.reload()
        await expect(page.locator(".msg.user").last).to_have_text(hostile)
        await expect(page.locator("#chat-list a").first).to_have_text(hostile)
        await expect(page.locator(".msg.assistant a")).to_have_text("click")
        assert await page.evaluate("window.pwned === undefined")
        assert await page.locator(".msg.assistant img[onerror]").count() == 0
        assert "javascript" not in (
            await page.locator(".msg.assistant a").get_attribute("href") or ""
        )
        await page.locator("#chat-list a", has_text="Show me some Python").click()
        await expect(page.locator(".msg.assistant pre code").first).to_have_text("print('hi')")
        await shot(page, "12-saved-chats")

        # Playground controls: kept with the chat, sent with each message, shown as code.
        await page.get_by_text("Settings and code").click()
        await page.get_by_label("System prompt").fill("Answer briefly.")
        await page.get_by_role("spinbutton", name="Temperature").fill("0.3")
        await expect(page.locator("#chat-settings-note")).to_have_text("Saved with this chat.")
        await page.get_by_label("Your message").fill("Once more")
        await page.get_by_role("button", name="Send").click()
        await expect(page.locator(".msg.assistant").last.locator(".meta")).to_contain_text("ms")
        sent = [body for kind, body in fake.requests if kind == "chat"][-1]
        assert sent["messages"][0] == {"role": "system", "content": "Answer briefly."}
        assert sent["temperature"] == 0.3 and sent["messages"][-1]["content"] == "Once more"
        await page.get_by_text("View code").click()
        curl = await page.locator("#chat-code-curl").input_value()
        base = ollama_state.settings.public_base_url
        assert f"curl {base}/v1/chat/completions" in curl
        assert "$SIZZLE_API_KEY" in curl and "X-Sizzle-Conversation" in curl
        assert '"temperature": 0.3' in curl and "Answer briefly." in curl
        python = await page.locator("#chat-code-python").input_value()
        assert "OpenAI(base_url=" in python and "temperature=0.3" in python
        await shot(page, "13-chat-settings-code")
        await page.reload()
        await expect(page.get_by_label("System prompt")).to_have_value("Answer briefly.")
        await browser.close()
    await ollama_state.chat_proxy.close()


async def test_an_operator_grants_credit_and_reads_the_books(
    page: playwright_api.Page, db: Database, clock: FakeClock
) -> None:
    expect = playwright_api.expect
    operator = await make_user(db, now=clock.now(), is_admin=True)
    customer = await make_user(db, now=clock.now(), free_minutes=0)
    await page.goto("/signin")
    await page.get_by_label("Email").fill(operator.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("link", name="Operator").click()
    await expect(page.get_by_role("heading", level=1)).to_be_visible()
    await shot(page, "14-operator-overview")
    await page.goto(f"/admin/users?q={customer.email}")
    row = page.locator("tr", has_text=customer.email)
    await row.get_by_text("Grant credit").click()  # opens the grant form
    await row.get_by_label("Amount in dollars").fill("12.50")
    await row.get_by_role("button", name=f"Grant to {customer.email}").click()
    await expect(page.locator(".notice.ok")).to_be_visible()
    await expect(page.locator("tr", has_text=customer.email)).to_contain_text("12.50")
    await shot(page, "15-operator-users")
    await page.goto("/admin/revenue")
    await shot(page, "16-operator-revenue")
