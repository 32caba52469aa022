"""What Sizzle tells a user about their sessions and payments, in words, and when.

Each function is called in the transaction of the change it tells of (a session turning ready,
stopped by a job, a top-up charged), so the notification exists exactly when the change
committed; its key makes it once however often the job runs. Money is said the Sizzle way
(domain/charges.py): free minutes, Sizzle Lab minutes and credit told apart, never dollars for
free time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from sizzle.db.models import GpuSession, LedgerAccount, LedgerEntry, Notification, User
from sizzle.domain.charges import Funds, SessionCharges, count, dollars
from sizzle.domain.lab import LAB_NAME
from sizzle.domain.lifecycle import EndReason, SessionStatus
from sizzle.domain.money import MS_PER_MINUTE
from sizzle.services.notifications import Kind, notify, page_open

# A running session whose user's funds pay for fewer minutes of it than this is "low".
CREDIT_LOW_MINUTES = 10
MS_PER_HOUR = 60 * MS_PER_MINUTE


def session_link(session: GpuSession) -> str:
    return f"/sessions/{session.id}"


def _what(session: GpuSession) -> str:
    """'Your pro GPU (llama3.1:8b)': sentence case, as every notice names a GPU."""
    model = f" ({session.model})" if session.model else ""
    return f"Your {session.tier} GPU{model}"


async def session_ready(tx: AsyncSession, session: GpuSession, *, now: datetime) -> None:
    """The GPU is ready: mailed only if its page is not open (the page shows it already)."""
    await notify(
        tx,
        user_id=session.user_id,
        kind=Kind.SESSION_READY,
        key=f"session_ready:{session.id}",
        title=f"{_what(session)} is ready",
        body=(
            f"{_what(session)} is ready to use. Nothing is charged until you press Start on its "
            "page; if it is not started soon, it is released, still at no charge."
        ),
        now=now,
        link=session_link(session),
        session_id=session.id,
        mail=not page_open(session, now),
    )


_STOP_WHY = {
    EndReason.INSUFFICIENT_CREDITS: (
        "Your session stopped: nothing left to pay for it",
        "{what} stopped at the end of its last paid minute: your {funds} ran out. Add credit "
        "on the Billing page to launch again.",
    ),
    EndReason.MAX_MINUTES: (
        "Your session reached its limit",
        "{what} ran for the time you set (or what your spending limit pays for), so Sizzle "
        "stopped it.",
    ),
    EndReason.ABANDONED: (
        "Your GPU was released: it was not started",
        "{what} was ready but not started in time, so Sizzle released it. Nothing was charged "
        "for it.",
    ),
    EndReason.PAUSE_EXPIRED: (
        "Your paused session was ended",
        "{what} stayed paused longer than Sizzle keeps a GPU for you, so Sizzle ended it. "
        "Paused time was never charged.",
    ),
}


async def session_auto_stopped(
    tx: AsyncSession, session: GpuSession, reason: EndReason, *, now: datetime
) -> None:
    """Sizzle stopped the session (out of money, a limit, never started, paused too long):
    what it used, and why. Call it after the status change, so the charges are final. Stops
    told by their own kind (idle, budget) are not told here."""
    if reason not in _STOP_WHY:
        return
    title, why = _STOP_WHY[reason]
    funds = "free minutes and credit"
    if session.plan_minutes_used:
        funds = f"free minutes, {LAB_NAME} minutes and credit"
    body = why.format(what=_what(session), funds=funds)
    if session.charged_minutes:
        body += f" In all it used {count(session.charged_minutes, 'minute')}: "
        body += f"{SessionCharges.of_session(session).text}."
    await notify(
        tx,
        user_id=session.user_id,
        kind=Kind.SESSION_AUTO_STOPPED,
        key=f"session_auto_stopped:{session.id}",
        title=title,
        body=body,
        now=now,
        link=session_link(session),
        session_id=session.id,
    )


def still_running_mark(active_ms: int, every_hours: int) -> int | None:
    """The billable hour whose "still running" reminder is due by now (1, then every
    `every_hours` after: with 2, hours 1, 3, 5...); None before the first hour or when off."""
    if every_hours <= 0 or active_ms < MS_PER_HOUR:
        return None
    hours = active_ms // MS_PER_HOUR
    return 1 + (hours - 1) // every_hours * every_hours


async def remind_still_running(tx: AsyncSession, *, now: datetime) -> int:
    """Tell each user whose session is still running past its next reminder hour (keyed by
    session and hour, so once each; only the latest hour after a pause in the job). How many
    were made."""
    now_ms = int(now.timestamp() * 1000)
    billable = GpuSession.active_ms_before + (now_ms - GpuSession.active_since_ms)
    rows = (
        await tx.execute(
            select(GpuSession, User.still_running_every_hours, billable)
            .join(User, User.id == GpuSession.user_id)
            .where(
                GpuSession.status == SessionStatus.ACTIVE.value,
                GpuSession.active_since_ms.is_not(None),
                User.still_running_every_hours > 0,
                billable >= MS_PER_HOUR,
            )
        )
    ).all()
    due = {}
    for session, every, active in rows:
        mark = still_running_mark(int(active), int(every))
        if mark is not None:
            due[f"still_running:{session.id}:{mark}"] = (session, mark)
    if not due:
        return 0
    told = set(await tx.scalars(select(Notification.key).where(Notification.key.in_(list(due)))))
    made = 0
    for key, (session, mark) in due.items():
        if key in told:
            continue
        used = SessionCharges.of_session(session).text
        price = dollars(session.price_micros_per_minute)
        spent_first = (
            f"free and {LAB_NAME} minutes" if session.plan_minutes_used else "free minutes"
        )
        made += await notify(
            tx,
            user_id=session.user_id,
            kind=Kind.STILL_RUNNING,
            key=key,
            title=f"Still running: {count(mark, 'hour')} so far",
            body=(
                f"{_what(session)} has been running for {count(mark, 'hour')}. So far: {used}. "
                f"Once your {spent_first} are spent, each minute is {price} of credit while "
                "it runs. Stop it on its page when you are done."
            ),
            now=now,
            link=session_link(session),
            session_id=session.id,
            mail=not page_open(session, now),
        )
    return made


async def tell_credit_low(tx: AsyncSession, *, now: datetime) -> int:
    """Tell the owners of active sessions whose free minutes, Lab minutes and credit pay for
    fewer than CREDIT_LOW_MINUTES more minutes of it. Once per session per low spell: a spell
    is known by the last entry that added to the user's balances (a top-up starts a new one).
    How many were made."""
    free, lab, credit = (aliased(LedgerAccount) for _ in range(3))
    rows = (
        await tx.execute(
            select(GpuSession, free.balance, lab.balance, credit.balance)
            .join(free, (free.user_id == GpuSession.user_id) & (free.kind == "free_minutes"))
            .join(lab, (lab.user_id == GpuSession.user_id) & (lab.kind == "included_minutes"))
            .join(credit, (credit.user_id == GpuSession.user_id) & (credit.kind == "credit"))
            .where(GpuSession.status == SessionStatus.ACTIVE.value)
        )
    ).all()
    low = []
    for session, free_left, lab_left, credit_left in rows:
        funds = Funds(free_minutes=free_left, plan_minutes=lab_left, credit_micros=credit_left)
        left = funds.minutes_at(session.price_micros_per_minute, lab_covered=session.lab_covered)
        if left < CREDIT_LOW_MINUTES:
            low.append((session, funds, left))
    made = 0
    for session, funds, left in low:
        spell = await _last_addition(tx, session.user_id)
        made += await notify(
            tx,
            user_id=session.user_id,
            kind=Kind.CREDIT_LOW,
            key=f"credit_low:{session.id}:{spell}",
            title=f"Running low: about {count(left, 'minute')} left",
            body=(
                f"{_what(session)} is running, and what you have left pays for about "
                f"{count(left, 'minute')} more of it ({_funds_text(funds, session)}). When "
                "nothing is left it stops at the end of its last paid minute. Add credit on "
                "the Billing page to keep it running."
            ),
            now=now,
            link="/billing",
            session_id=session.id,
        )
    return made


def _funds_text(funds: Funds, session: GpuSession) -> str:
    parts = [f"{count(funds.free_minutes, 'free minute')}"]
    if session.lab_covered and funds.plan_minutes:
        parts.append(count(funds.plan_minutes, f"{LAB_NAME} minute"))
    parts.append(f"{dollars(funds.credit_micros)} credit")
    return ", ".join(parts)


async def _last_addition(tx: AsyncSession, user_id: str) -> int:
    """The id of the newest ledger entry that added to one of the user's balances (0: none)."""
    mine = select(LedgerAccount.id).where(LedgerAccount.user_id == user_id)
    newest = await tx.scalar(
        select(func.max(LedgerEntry.id)).where(LedgerEntry.credit_account_id.in_(mine))
    )
    return int(newest or 0)
