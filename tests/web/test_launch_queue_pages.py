"""The wizard's "Tell me when it's free" and the sessions page's "Waiting for a GPU"."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import QueuedLaunch
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.web.pages import csrf_of, sign_in

QUEUE_FORM = '<form method="post" action="/launch/queue"'


@pytest.fixture
async def full(
    settings: Settings, clock: FakeClock, db: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on a Sizzle whose demo has no GPU free at all."""
    busy = settings.model_copy(update={"demo_capacity": 0})
    app = create_app(state=AppState.build(busy, clock=clock, db=db), run_jobs=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://sizzle.test"
    ) as client:
        yield client


def _hidden(page: httpx.Response, form_start: str) -> dict[str, str]:
    form = page.text[page.text.index(form_start) :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))


async def _refused_launch(browser: httpx.AsyncClient, query: str) -> httpx.Response:
    confirm = await browser.get(f"/launch?step=confirm&{query}")
    launch = _hidden(confirm, '<form method="post" action="/launch"')
    return await browser.post("/launch", data={**launch, "csrf_token": csrf_of(confirm)})


async def _entries(db: Database) -> list[QueuedLaunch]:
    async with db.read() as tx:
        return list(await tx.scalars(select(QueuedLaunch).order_by(QueuedLaunch.created_at)))


async def test_no_gpu_free_offers_to_wait_keeping_the_tier_model_and_limits(
    full: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(full, db, clock=clock)
    refused = await _refused_launch(full, "tier=pro&model=llama3.1-8b&max_minutes=45&idle=30")
    assert refused.status_code == 503
    assert "Tell me when it&#39;s free" in refused.text or "Tell me when it's free" in refused.text
    assert "Waiting costs nothing" in refused.text and "within 24 hours" in refused.text
    assert "the GPU is held for you 30 minutes at no charge" in refused.text
    offer = _hidden(refused, QUEUE_FORM)
    assert (offer["tier"], offer["model"], offer["max_minutes"], offer["idle"]) == (
        "pro",
        "llama3.1-8b",
        "45",
        "30",
    )

    queued = await full.post("/launch/queue", data=offer)  # one click: the token is in the form
    assert queued.status_code == 303
    assert queued.headers["location"] == "/sessions?queued=1#waiting"
    [entry] = await _entries(db)
    assert (entry.tier, entry.status, entry.max_minutes, entry.idle_minutes) == (
        "pro",
        "waiting",
        45,
        30,
    )
    assert entry.model is not None and entry.model.startswith("llama3.1:8b")

    clock.advance(125)
    page = await full.get(queued.headers["location"])
    assert "Sizzle will launch it as soon as a GPU is free" in page.text
    waiting = page.text[page.text.index('<h2 id="waiting">') :]
    assert "Waiting for a GPU" in page.text and "Pro" in waiting and "Next" in waiting
    assert "2 min 05 s" in waiting
    assert "Llama 3.1 8B" in waiting and "llama3.1:8b" not in waiting  # its name, as elsewhere


async def test_cancel_on_the_sessions_page_ends_the_wait(
    full: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(full, db, clock=clock)
    offer = _hidden(await _refused_launch(full, "tier=starter&model=none"), QUEUE_FORM)
    await full.post("/launch/queue", data=offer)
    page = await full.get("/sessions")
    [entry] = await _entries(db)
    cancel = f'<form method="post" action="/launch-queue/{entry.id}/cancel">'
    assert cancel in page.text
    done = await full.post(f"/launch-queue/{entry.id}/cancel", data={"csrf_token": csrf_of(page)})
    assert done.status_code == 303 and done.headers["location"] == "/sessions"
    assert (await _entries(db))[0].status == "cancelled"
    assert "Waiting for a GPU" not in (await full.get("/sessions")).text


async def test_a_fourth_wait_is_refused_with_the_way_to_the_others(
    full: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(full, db, clock=clock)
    offer = _hidden(await _refused_launch(full, "tier=starter&model=none"), QUEUE_FORM)
    for _ in range(3):
        assert (await full.post("/launch/queue", data=offer)).status_code == 303
    refused = await full.post("/launch/queue", data=offer)
    assert refused.status_code == 409
    assert "3 launches waiting for a GPU, the most at once" in refused.text
    assert '<a href="/sessions#waiting">See what is waiting</a>' in refused.text


async def test_another_users_wait_cannot_be_cancelled_from_the_page(
    full: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(full, db, clock=clock)
    offer = _hidden(await _refused_launch(full, "tier=starter&model=none"), QUEUE_FORM)
    await full.post("/launch/queue", data=offer)
    [entry] = await _entries(db)
    full.cookies.clear()
    await sign_in(full, db, clock=clock)
    page = await full.get("/sessions")
    refused = await full.post(
        f"/launch-queue/{entry.id}/cancel", data={"csrf_token": csrf_of(page)}
    )
    assert refused.status_code == 404
    assert (await _entries(db))[0].status == "waiting"


async def test_operators_see_the_launches_waiting_and_the_longest_wait(
    full: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(full, db, clock=clock)
    offer = _hidden(await _refused_launch(full, "tier=beast&model=none"), QUEUE_FORM)
    await full.post("/launch/queue", data=offer)
    clock.advance(3600 + 5 * 60)
    full.cookies.clear()
    await sign_in(full, db, clock=clock, is_admin=True)
    page = await full.get("/admin")
    assert page.status_code == 200
    assert '<div class="value" id="queued-waiting">1</div>' in page.text
    assert '<div class="value" id="queued-oldest">1 h 05 min</div>' in page.text
    assert '<div class="label">Beast</div><div class="value">1</div>' in page.text
