"""Static files: pages name them by content (`?v=<hash>`), such URLs are cached for a year,
plain ones are revalidated, text is gzip-compressed, and there is a favicon."""

from __future__ import annotations

import gzip
import hashlib
import re

import httpx

from sizzle.web.assets import STATIC_DIR, version_of

YEAR = "public, max-age=31536000, immutable"


async def _linked_assets(browser: httpx.AsyncClient) -> list[str]:
    page = await browser.get("/signin")
    assert page.status_code == 200
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)


async def test_pages_name_static_files_by_their_content(browser: httpx.AsyncClient) -> None:
    linked = await _linked_assets(browser)
    css = STATIC_DIR / "sizzle.css"
    assert f"/static/sizzle.css?v={version_of('sizzle.css')}" in linked
    assert version_of("sizzle.css") == hashlib.sha256(css.read_bytes()).hexdigest()[:12]
    assert any(url.startswith("/static/favicon.svg?v=") for url in linked)
    for url in linked:
        assert re.search(r"\?v=[0-9a-f]{12}$", url), url
        response = await browser.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == YEAR


async def test_unversioned_or_stale_urls_are_revalidated(browser: httpx.AsyncClient) -> None:
    for url in ("/static/sizzle.css", "/static/sizzle.css?v=000000000000"):
        response = await browser.get(url)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-cache"
        etag = response.headers["etag"]
        again = await browser.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["cache-control"] == "no-cache"
    assert (await browser.get("/static/nothing-here.css?v=1")).status_code == 404


async def test_text_files_are_compressed_for_those_who_take_gzip(
    browser: httpx.AsyncClient,
) -> None:
    for name in ("sizzle.css", "vendor/htmx-2.0.11.min.js"):
        url = f"/static/{name}?v={version_of(name)}"
        raw = await browser.get(url, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in raw.headers
        async with browser.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as packed:
            assert packed.headers["content-encoding"] == "gzip"
            assert packed.headers["cache-control"] == YEAR
            assert "accept-encoding" in packed.headers["vary"].lower()
            body = b"".join([chunk async for chunk in packed.aiter_raw()])
        assert len(body) < len(raw.content) / 2
        assert gzip.decompress(body) == (STATIC_DIR / name).read_bytes()


async def test_there_is_a_favicon(browser: httpx.AsyncClient) -> None:
    icon = await browser.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert (
        icon.content.startswith(b"<svg")
        and icon.content == (STATIC_DIR / "favicon.svg").read_bytes()
    )
    assert "max-age" in icon.headers["cache-control"]
