"""Rendering pages: one Jinja2 environment, the signed-in user and CSRF token in every page."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from sizzle.api.schemas import usd
from sizzle.db.models import User
from sizzle.services.accounts import MIN_PASSWORD_LENGTH
from sizzle.services.inbox import UNREAD_COUNTED_UP_TO
from sizzle.services.model_library import model_name
from sizzle.web import tiers_view
from sizzle.web.assets import static_url
from sizzle.web.security import CSRF_FIELD, csrf_token, remember_csrf

WEB_DIR = Path(__file__).parent
templates = Jinja2Templates(directory=WEB_DIR / "templates")


def duration(seconds: float | int | None) -> str:
    """1 h 05 min, 4 min 09 s, 12 s."""
    if seconds is None:
        return "-"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def when(moment: datetime | None) -> Markup | str:
    """A moment as a `<time>` in UTC; the page's script (site.js) shows it in the reader's own
    time zone, naming the zone. Without the script it stays in UTC, and says so."""
    if moment is None:
        return "-"
    if moment.tzinfo is None:  # SQLite hands back naive datetimes: they are UTC
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return Markup('<time datetime="{}" data-local>{}</time>').format(
        moment.strftime("%Y-%m-%dT%H:%M:%SZ"), moment.strftime("%Y-%m-%d %H:%M UTC")
    )


templates.env.filters["usd"] = usd
templates.env.filters["duration"] = duration
templates.env.filters["when"] = when
templates.env.filters["model_name"] = model_name
templates.env.globals["min_password"] = MIN_PASSWORD_LENGTH
templates.env.globals["static_url"] = static_url
templates.env.globals.update(tiers_view.GLOBALS)


def render(
    request: Request,
    template: str,
    *,
    user: User | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    context.update(user=user, csrf_token=csrf_token(request), csrf_field=CSRF_FIELD)
    context.setdefault("unread_notifications", getattr(request.state, "unread_notifications", 0))
    context.setdefault("unread_counted_up_to", UNREAD_COUNTED_UP_TO)
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    remember_csrf(request, response)
    return response
