"""My notifications (the inbox: newest first, marking them read) and which of them are mailed.

The inbox is open to API keys that may read my sessions (`sessions:read`), since what it tells
is about them and their cost; which kinds are mailed is an account setting (sign-in only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from sizzle.api.deps import CurrentUser, IdPath, PagingDep, SessionsReader, StateDep
from sizzle.api.openapi import error_responses
from sizzle.api.schemas import CleanStr, Page
from sizzle.db.models import Notification
from sizzle.services import accounts, inbox
from sizzle.services.notification_preferences import (
    MONEY_CRITICAL_WHY,
    STILL_RUNNING_CHOICES,
    Preferences,
    read_preferences,
    set_preferences,
)

router = APIRouter(tags=["notifications"])

MAX_IDS = 500


class NotificationOut(BaseModel):
    id: str
    kind: str
    title: str
    body: str
    link: str | None = Field(description="A path on the site, e.g. /sessions/<id>.")
    session_id: str | None
    created_at: datetime
    read_at: datetime | None
    mail_status: str = Field(
        description="pending, sending, sent, failed, or off (not mailed: the kind is turned "
        "off, the page already showed it, or over the hourly cap)."
    )


class NotificationPage(Page[NotificationOut]):
    unread: int = Field(
        description=f"Unread notifications, counted up to {inbox.UNREAD_COUNTED_UP_TO}."
    )


class MarkReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[CleanStr, Field(max_length=64)]] | None = Field(
        None, max_length=MAX_IDS, description="These; all of mine when left out."
    )


class MarkedOut(BaseModel):
    marked: int = Field(description="How many were unread and are read now.")
    unread: int


class KindPreferenceOut(BaseModel):
    kind: str
    label: str
    description: str
    mailed: bool
    can_turn_off: bool


class PreferencesOut(BaseModel):
    kinds: list[KindPreferenceOut]
    still_running_every_hours: int = Field(description="1, 2, 4 or 8; 0: never.")
    money_critical_note: str = MONEY_CRITICAL_WHY


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mailed: dict[Annotated[CleanStr, Field(max_length=64)], StrictBool] | None = Field(
        None,
        max_length=64,
        description="Kind -> whether it is mailed; kinds left out stay as they are.",
        examples=[{"still_running": False}],
    )
    still_running_every_hours: StrictInt | None = Field(
        None,
        description="Hours of running time between reminders: "
        + ", ".join(str(h) for h in STILL_RUNNING_CHOICES if h)
        + ", or 0 for never.",
    )


def notification_out(row: Notification) -> NotificationOut:
    return NotificationOut(
        id=row.id,
        kind=row.kind,
        title=row.title,
        body=row.body,
        link=row.link,
        session_id=row.session_id,
        created_at=row.created_at,
        read_at=row.read_at,
        mail_status=row.mail_status,
    )


def preferences_out(found: Preferences) -> PreferencesOut:
    return PreferencesOut(
        kinds=[
            KindPreferenceOut(
                kind=kind.kind.value,
                label=kind.label,
                description=kind.sentence,
                mailed=kind.mailed,
                can_turn_off=kind.can_turn_off,
            )
            for kind in found.kinds
        ],
        still_running_every_hours=found.still_running_every_hours,
    )


@router.get("/api/v1/notifications", response_model=NotificationPage)
async def list_notifications(
    user: SessionsReader, state: StateDep, paging: PagingDep
) -> NotificationPage:
    """My notifications, newest first, with how many are unread."""
    async with state.db.read() as tx:
        rows, total = await inbox.list_notifications(
            tx, user.id, limit=paging.limit, offset=paging.offset
        )
        unread = await inbox.unread_count(tx, user.id)
    return NotificationPage(items=[notification_out(r) for r in rows], total=total, unread=unread)


@router.get(
    "/api/v1/notifications/{notification_id}",
    response_model=NotificationOut,
    responses=error_responses(404),
)
async def get_notification(
    notification_id: IdPath, user: SessionsReader, state: StateDep
) -> NotificationOut:
    """One of my notifications."""
    async with state.db.read() as tx:
        return notification_out(await inbox.get_notification(tx, user.id, notification_id))


@router.post("/api/v1/notifications/read", response_model=MarkedOut, responses=error_responses(404))
async def mark_read(body: MarkReadIn, user: SessionsReader, state: StateDep) -> MarkedOut:
    """Mark my notifications read: all of them, or those `ids` names (404, and none marked, if
    one of them is not mine)."""
    async with state.db.transaction() as tx:
        marked = await inbox.mark_read(tx, user.id, now=state.clock.now(), ids=body.ids)
        unread = await inbox.unread_count(tx, user.id)
    return MarkedOut(marked=marked, unread=unread)


@router.get("/api/v1/account/notifications", response_model=PreferencesOut)
async def get_preferences(user: CurrentUser, state: StateDep) -> PreferencesOut:
    """Which kinds of notification are mailed to me, and how often "still running" is told."""
    async with state.db.read() as tx:
        return preferences_out(await read_preferences(tx, user))


@router.put("/api/v1/account/notifications", response_model=PreferencesOut)
async def put_preferences(
    body: PreferencesIn, user: CurrentUser, state: StateDep
) -> PreferencesOut:
    """Turn kinds' mails on or off, and set how often "still running" is told. Money-critical
    kinds cannot be turned off: 422 `money_critical`."""
    async with state.db.transaction() as tx:
        account = await accounts.get_active_user(tx, user.id)
        await set_preferences(
            tx,
            account,
            mailed=body.mailed,
            still_running_every_hours=body.still_running_every_hours,
        )
        return preferences_out(await read_preferences(tx, account))
