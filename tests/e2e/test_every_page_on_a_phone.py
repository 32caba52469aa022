"""Every page, on a phone: each HTML page that the page routers serve is opened 390 px wide in
chromium, as an operator whose account holds the long names people type (a key's, an SSH key's,
a session's model), and must not scroll sideways; 1,280 px wide, no table may hide a column.
A page route this walk cannot fill in fails it, so that a new page is walked too. Screenshots
of each go to SIZZLE_SCREENSHOTS as `phone-<path>.png`."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi.routing import APIRoute

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.legal import BY_SLUG
from sizzle.state import AppState
from sizzle.web.routes import PAGE_MODULES
from tests.e2e.browser import DESKTOP, PHONE, needs_chromium, shot
from tests.e2e.test_browser_journey import page, playwright_api, site  # noqa: F401
from tests.helpers import PASSWORD, act, launch_active_session, log_in, make_user, run_for

pytestmark = needs_chromium

LONG = "a-rather-long-name-that-someone-typed-without-any-spaces-at-all-" * 2
# Pages that are not pages: streams, downloads, machine-read JSON, actions behind a GET.
NOT_HTML = re.compile(r"(/events$|\.json$|\.md$|\.csv$|\.pdf$|\.\{kind\}$|/favicon)")


# The innermost element that sticks out past the right edge, to say what to fix.
WIDEST = """() => {
  const edge = document.documentElement.clientWidth;
  const clipped = (element) => {
    for (let up = element.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") return true;
    }
    return false;
  };
  let found = null;
  for (const element of document.body.querySelectorAll("*")) {
    if (element.getBoundingClientRect().right > edge + 1 && !clipped(element)) found = element;
  }
  if (!found) return "nothing found";
  const name = found.tagName.toLowerCase() + (found.id ? "#" + found.id : "")
    + (found.className && typeof found.className === "string" ? "." + found.className : "");
  return name + " '" + (found.textContent || "").trim().slice(0, 40) + "'";
}"""


@pytest.fixture
async def api(site: str) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with httpx.AsyncClient(base_url=site, timeout=10) as client:
        yield client


def page_paths() -> list[str]:
    """The path template of every GET page route."""
    paths = set()
    for module in PAGE_MODULES:
        for route in module.router.routes:
            if isinstance(route, APIRoute) and "GET" in route.methods:
                if not NOT_HTML.search(route.path):
                    paths.add(route.path)
    return sorted(paths)


async def test_no_page_scrolls_sideways_on_a_phone(
    page: playwright_api.Page,  # noqa: F811
    api: httpx.AsyncClient,
    db: Database,
    state: AppState,
    clock: FakeClock,
) -> None:
    operator = await make_user(db, now=clock.now(), is_admin=True, credit_usd="5")
    auth = await log_in(api, email=operator.email)
    key = await api.post(
        "/api/v1/keys", json={"name": LONG[:100], "scopes": ["sessions:read"]}, headers=auth
    )
    assert key.status_code == 201, key.text
    ended = await launch_active_session(api, state, clock, auth=auth)
    await run_for(state, clock, seconds=61, step=61)
    assert (await act(api, session_id=ended, action="stop", auth=auth)).status_code == 200
    running = await launch_active_session(api, state, clock, auth=auth)
    chat = await api.post(
        "/api/v1/conversations",
        json={"title": LONG[:200], "session_id": running, "system_prompt": LONG},
        headers=auth,
    )
    assert chat.status_code == 201, chat.text
    values = {  # each path parameter: the pages to walk with it
        "session_id": [running, ended],
        "user_id": [operator.id],
        "key_id": [key.json()["id"]],
        "slug": sorted(BY_SLUG),
        "conversation_id": [chat.json()["id"]],
    }

    await page.goto("/signin")
    await page.get_by_label("Email").fill(operator.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
    await page.set_viewport_size(PHONE)

    wide: list[str] = []
    clipped: list[str] = []
    walked = 0
    for template in page_paths():
        names = re.findall(r"{(\w+)}", template)
        unknown = [name for name in names if name not in values]
        assert not unknown, f"the phone walk cannot fill {unknown} in {template}: add them"
        for filled in itertools.product(*(values[name] for name in names)):
            path = template
            for name, value in zip(names, filled, strict=True):
                path = path.replace(f"{{{name}}}", value)
            response = await page.goto(path)
            assert response is not None
            if "text/html" not in (response.headers.get("content-type") or ""):
                continue
            walked += 1
            await page.wait_for_load_state()
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            await shot(page, "phone-" + (path.strip("/").replace("/", "-") or "home"))
            if overflow > 0:
                culprit = await page.evaluate(WIDEST)
                wide.append(f"{path} ({response.status}) by {overflow}px: {culprit}")
            await page.set_viewport_size(DESKTOP)  # on a desktop, no table hides a column
            hidden = await page.evaluate(
                "[...document.querySelectorAll('.table-wrap')]"
                ".map((wrap) => wrap.scrollWidth - wrap.clientWidth).filter((x) => x > 0)"
            )
            if hidden:
                clipped.append(f"{path}: a table scrolls by {hidden}px at 1,280 px")
            await page.set_viewport_size(PHONE)
    assert walked >= 15, f"only {walked} pages walked: the walk lost its way"
    assert not wide, "pages that scroll sideways on a phone: " + "; ".join(wide)
    assert not clipped, "tables that hide columns on a desktop: " + "; ".join(clipped)
