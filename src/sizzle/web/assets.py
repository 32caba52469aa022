"""Static files: gzip-compressed, and cached for a year under a URL that names their content
(`/static/sizzle.css?v=<hash>`), so a new release is fetched at once and nothing else is."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.datastructures import QueryParams
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
FAVICON = STATIC_DIR / "favicon.svg"
VERSIONED = "public, max-age=31536000, immutable"
# without the version a file may change under the same URL: the browser asks each time, and
# a 304 (ETag) answers when it has not
UNVERSIONED = "no-cache"
FAVICON_CACHE = "public, max-age=86400"


@functools.cache
def version_of(path: str) -> str:
    """A short digest of a static file's content (read once per process)."""
    return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:12]


def static_url(path: str) -> str:
    """The versioned URL of a static file, for templates."""
    return f"/static/{path}?v={version_of(path)}"


class StaticAssets(StaticFiles):
    """StaticFiles that say how long a file may be cached: a year when the URL carries the
    file's current version, otherwise not without asking."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            # a 200 or 304 means StaticFiles found `path` inside the folder
            asked = QueryParams(scope.get("query_string", b"")).get("v")
            current = asked is not None and asked == version_of(path)
            response.headers["Cache-Control"] = VERSIONED if current else UNVERSIONED
        return response


def install(app: FastAPI) -> None:
    """Serve /static (compressed) and /favicon.ico."""
    files = StaticAssets(directory=STATIC_DIR)
    # only the static files are compressed here: event streams and chat never pass through it
    app.mount("/static", GZipMiddleware(files, minimum_size=500), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(
            FAVICON, media_type="image/svg+xml", headers={"Cache-Control": FAVICON_CACHE}
        )
