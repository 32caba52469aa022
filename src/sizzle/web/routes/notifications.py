"""The inbox page (`/notifications`: newest first, mark all read) and the account page's
"Notifications" form (which kinds are mailed, how often "still running" is told)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sizzle.api.deps import PagingDep, StateDep
from sizzle.errors import SizzleError, ValidationFailed
from sizzle.services import accounts, inbox
from sizzle.services.notification_preferences import read_preferences, set_preferences
from sizzle.web.deps import CsrfChecked, SignedIn
from sizzle.web.render import render
from sizzle.web.routes.account import profile_page

router = APIRouter(include_in_schema=False)


@router.get("/notifications", response_class=HTMLResponse)
async def notifications_page(
    request: Request, state: StateDep, user: SignedIn, paging: PagingDep
) -> Response:
    """What Sizzle told me, newest first."""
    async with state.db.read() as tx:
        rows, total = await inbox.list_notifications(
            tx, user.id, limit=paging.limit, offset=paging.offset
        )
    return render(
        request,
        "notifications/inbox.html",
        user=user,
        notifications=rows,
        total=total,
        paging=paging,
    )


@router.post("/notifications/read", dependencies=[CsrfChecked])
async def mark_all_read(state: StateDep, user: SignedIn) -> Response:
    async with state.db.transaction() as tx:
        await inbox.mark_read(tx, user.id, now=state.clock.now())
    return RedirectResponse("/notifications", status_code=303)


@router.post("/account/notifications", dependencies=[CsrfChecked])
async def save_preferences(request: Request, state: StateDep, user: SignedIn) -> Response:
    """Save the ticked kinds and the reminder interval; back to the account page's section."""
    form = await request.form()
    try:
        raw_hours = str(form.get("still_running_every_hours", ""))
        if not raw_hours.isdigit() or len(raw_hours) > 2:
            raise ValidationFailed("choose how often to be reminded", code="bad_reminder_interval")
        async with state.db.transaction() as tx:
            account = await accounts.get_active_user(tx, user.id)
            current = await read_preferences(tx, account)
            mailed = {
                choice.kind.value: form.get(f"mail_{choice.kind.value}") == "on"
                for choice in current.kinds
                if choice.can_turn_off
            }
            await set_preferences(
                tx, account, mailed=mailed, still_running_every_hours=int(raw_hours)
            )
    except SizzleError as exc:
        return await profile_page(
            request, state, user, status_code=exc.status_code, notification_error=exc.message
        )
    return RedirectResponse("/account?notifications=saved#notifications", status_code=303)
