"""What the browser tests share: Sizzle served on loopback, a chromium tab (Playwright), and
screenshots to SIZZLE_SCREENSHOTS (default `artifacts/screenshots/`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = os.environ.get("SIZZLE_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("SIZZLE_SCREENSHOTS", "artifacts/screenshots"))
WAIT_MS = 15_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

needs_chromium = pytest.mark.skipif(
    not shutil.which(CHROMIUM),
    reason=f"needs Debian's chromium at {CHROMIUM} (.ci/run installs it)",
)


@asynccontextmanager
async def chromium_tab(base_url: str) -> AsyncIterator[Any]:
    """A headless chromium tab on `base_url`, 1,280 px wide."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        context = await browser.new_context(base_url=base_url, viewport=DESKTOP)
        tab = await context.new_page()
        tab.set_default_timeout(WAIT_MS)
        try:
            yield tab
        finally:
            await browser.close()


async def shot(page: Any, name: str) -> None:
    """Save a screenshot (an artifact, not an assertion). Chromium on a loaded machine
    sometimes cannot capture a full page: try again, then the viewport only, then warn."""
    path = str(SHOTS / f"{name}.png")
    for full_page in (True, True, False):
        try:
            await page.screenshot(path=path, full_page=full_page)
            return
        except playwright_api.Error as exc:
            problem = exc
            await asyncio.sleep(0.2)
    warnings.warn(f"no screenshot {name}: {problem}", stacklevel=2)


async def both_widths(page: Any, name: str) -> None:
    """Screenshots at 1,280 and at 390 px; fails if the page scrolls sideways on a phone."""
    await shot(page, f"{name}-1280")
    await page.set_viewport_size(PHONE)
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    await shot(page, f"{name}-390")
    await page.set_viewport_size(DESKTOP)
    assert overflow <= 0, f"{page.url} scrolls sideways on a phone by {overflow}px"


async def sign_in_tab(page: Any, email: str, password: str) -> None:
    """Sign in through the sign-in page, as a person would."""
    await page.goto("/signin")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
