"""What idle auto-stop tells a session's owner, in words: the warning two minutes before the
limit, and the pause or stop at it. Each is keyed by the session and its last use, so it is
made once per stretch of idleness however many processes run the idle pass."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import GpuSession
from sizzle.domain.charges import SessionCharges
from sizzle.services.notifications import Kind, notify, page_open


def will(*, can_pause: bool) -> str:
    """What idle auto-stop does to the session: 'pauses' or 'stops'."""
    return "pauses" if can_pause else "stops"


async def warn(tx: AsyncSession, session: GpuSession, *, can_pause: bool, now: datetime) -> bool:
    """Warn the owner that the session pauses (or stops) in 2 minutes: mailed unless its page
    is open (the page counts down). True if this call made the warning."""
    return await notify(
        tx,
        user_id=session.user_id,
        kind=Kind.IDLE_WARNING,
        key=f"idle_warning:{session.id}:{session.last_activity_ms}",
        title=f"Your {session.tier} GPU {will(can_pause=can_pause)} in 2 minutes",
        body=_warning_body(session, can_pause=can_pause),
        now=now,
        link=f"/sessions/{session.id}",
        session_id=session.id,
        mail=not page_open(session, now),
    )


async def ended(tx: AsyncSession, session: GpuSession, *, paused: bool, now: datetime) -> None:
    """Tell the owner the session was paused (or stopped) for want of use, and what it cost."""
    await notify(
        tx,
        user_id=session.user_id,
        kind=Kind.IDLE_STOPPED,
        key=f"idle_stopped:{session.id}:{session.last_activity_ms}",
        title=(
            f"Your {session.tier} GPU was paused because nobody used it"
            if paused
            else f"Your {session.tier} GPU was stopped because nobody used it"
        ),
        body=_stopped_body(session, paused=paused),
        now=now,
        link=f"/sessions/{session.id}",
        session_id=session.id,
    )


def _warning_body(session: GpuSession, *, can_pause: bool) -> str:
    minutes = session.idle_minutes or 0
    ending = (
        "Paused time is free, and you can resume it whenever you like."
        if can_pause
        else "Stopping it ends the session and gives the GPU back."
    )
    return (
        f"Nobody has used this session for {minutes - 2} minutes: no chat, no request, "
        f"and its GPU is not busy. So that it does not cost you money for nothing, Sizzle "
        f"{will(can_pause=can_pause)} it after {minutes} minutes without use. {ending} To keep "
        'it running, open its page and press "Keep it running", or send it a request.'
    )


def _stopped_body(session: GpuSession, *, paused: bool) -> str:
    charges = SessionCharges.of_session(session)
    what = (
        "Sizzle paused it, so it costs nothing now. Resume it from its page whenever you like."
        if paused
        else "Sizzle stopped it and gave the GPU back; nothing more is charged for it."
    )
    return (
        f"Nobody used this session for {session.idle_minutes} minutes. {what} "
        f"So far: {charges.text}."
    )
