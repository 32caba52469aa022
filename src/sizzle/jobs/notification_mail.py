"""The notification mail job: mails what `notify` left pending, never from a request.

A round claims due rows in a short transaction (`pending`, or `sending` whose lease ran out:
the worker that claimed it died), marks them `sending` with a lease (`mail_due_at` moved to the
lease's end) and counts the attempt, then commits: another worker skips them (PostgreSQL:
`FOR UPDATE SKIP LOCKED`; SQLite has one writer). Mails go out with no transaction open. Each
result is written only while the claim is still ours: `sent`, or back to `pending` after an
exponential back-off, or `failed` after MAX_MAIL_ATTEMPTS.

The per-user cap (`SIZZLE_NOTIFICATION_MAILS_PER_HOUR`) counts the mails not about money sent
in the last hour and those in flight; beyond it such a mail is not sent (`off`, the reason
kept), while the inbox still shows it. Money-critical mails always go, and are not counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.database import Database
from sizzle.db.models import Notification, User
from sizzle.services.mail import Mail, Mailer
from sizzle.services.notification_preferences import KIND_TEXTS
from sizzle.services.notifications import MONEY_CRITICAL, Kind

log = structlog.get_logger(__name__)

CLAIM_BATCH = 20
# A claim not settled by then is taken again (its worker died mid-send).
SENDING_LEASE = timedelta(minutes=5)
# A round sends for at most this long (real time), well inside the lease, and hands back the
# rest of its claim: a slow mail server must not make another worker send the same mail.
SENDING_BUDGET_SECONDS = SENDING_LEASE.total_seconds() / 2
MAX_MAIL_ATTEMPTS = 6
FIRST_RETRY_AFTER = timedelta(minutes=1)  # then 2, 4, 8, 16 minutes
CAP_WINDOW = timedelta(hours=1)
SERVER_REFUSED = "the mail server refused it or could not be reached"


@dataclass
class MailRound:
    """What one round did."""

    sent: int = 0
    failed: int = 0  # attempts that failed (retried later)
    gave_up: int = 0
    capped: int = 0


@dataclass(frozen=True)
class _Claimed:
    id: str
    attempts: int
    to: str
    kind: Kind
    title: str
    body: str
    link: str | None


def retry_after(attempts: int) -> timedelta:
    """How long after the `attempts`-th failed try the next one is made."""
    return FIRST_RETRY_AFTER * (1 << (max(attempts, 1) - 1))


def compose(claimed: _Claimed, *, base_url: str) -> Mail:
    """The mail: the title, the body, a link on the site (under the public URL only), and how to
    turn the kind off."""
    lines = [claimed.title, "", claimed.body, ""]
    if claimed.link and claimed.link.startswith("/") and not claimed.link.startswith("//"):
        lines += [f"Open it on Sizzle: {base_url}{claimed.link}", ""]
    lines.append(f"All your notifications: {base_url}/notifications")
    settings_url = f"{base_url}/account#notifications"
    if claimed.kind.money_critical:
        lines.append(
            "This mail is about your money, so it is always sent. Your other notification "
            f"mails can be turned off on your account page: {settings_url}"
        )
    else:
        label = KIND_TEXTS[claimed.kind].label
        lines.append(
            f"Rather not get “{label}” mails? Turn them off on your account page: {settings_url}"
        )
    return Mail(to=claimed.to, subject=claimed.title, body="\n".join(lines) + "\n")


async def mail_notifications(
    db: Database, mailer: Mailer, *, now: datetime, base_url: str, mails_per_hour: int
) -> MailRound:
    """Send every notification mail that is due; what was done."""
    result = MailRound()
    claimed = await _claim(db, now=now, mails_per_hour=mails_per_hour, result=result)
    started = time.monotonic()
    for index, mail in enumerate(claimed):
        if time.monotonic() - started > SENDING_BUDGET_SECONDS:
            await _hand_back(db, claimed[index:])
            break
        sent = await mailer.send(compose(mail, base_url=base_url))
        await _settle(db, mail, sent=sent, now=now, result=result)
    if claimed:
        log.info(
            "notifications.mailed",
            sent=result.sent,
            failed=result.failed,
            gave_up=result.gave_up,
            capped=result.capped,
        )
    return result


async def _claim(
    db: Database, *, now: datetime, mails_per_hour: int, result: MailRound
) -> list[_Claimed]:
    claimed: list[_Claimed] = []
    async with db.transaction() as tx:
        rows = (
            await tx.execute(
                select(Notification, User.email, User.deleted_at)
                .join(User, User.id == Notification.user_id)
                .where(
                    Notification.mail_status.in_(("pending", "sending")),
                    Notification.mail_due_at <= now,
                )
                .order_by(Notification.mail_due_at, Notification.id)
                .limit(CLAIM_BATCH)
                .with_for_update(skip_locked=True, of=Notification)
            )
        ).all()
        used = await _mails_this_hour(tx, user_ids={row.user_id for row, _, _ in rows}, now=now)
        for row, email, deleted_at in rows:
            kind = Kind(row.kind)
            if deleted_at is not None:
                row.mail_status, row.mail_error, row.mail_due_at = "off", "account deleted", None
                continue
            if row.mail_attempts >= MAX_MAIL_ATTEMPTS:  # its last claim was never settled
                row.mail_status, row.mail_due_at = "failed", None
                row.mail_error = f"gave up after {row.mail_attempts} tries"
                result.gave_up += 1
                continue
            if not kind.money_critical and used.get(row.user_id, 0) >= mails_per_hour:
                row.mail_status, row.mail_due_at = "off", None
                row.mail_error = (
                    f"not mailed: {mails_per_hour} mails in an hour is the most we send (the "
                    "inbox shows it)"
                )
                result.capped += 1
                continue
            if not kind.money_critical:
                used[row.user_id] = used.get(row.user_id, 0) + 1
            row.mail_status = "sending"
            row.mail_attempts += 1
            row.mail_due_at = now + SENDING_LEASE
            claimed.append(
                _Claimed(row.id, row.mail_attempts, email, kind, row.title, row.body, row.link)
            )
    return claimed


async def _mails_this_hour(
    tx: AsyncSession, *, user_ids: set[str], now: datetime
) -> dict[str, int]:
    """Per user: capped mails (not about money) sent in the last hour, and those being sent
    (by any worker) now."""
    if not user_ids:
        return {}
    rows = await tx.execute(
        select(Notification.user_id, func.count())
        .where(
            Notification.user_id.in_(user_ids),
            Notification.kind.not_in([kind.value for kind in MONEY_CRITICAL]),
            or_(
                (Notification.mail_status == "sent") & (Notification.mailed_at > now - CAP_WINDOW),
                Notification.mail_status == "sending",
            ),
        )
        .group_by(Notification.user_id)
    )
    return {str(user_id): int(n) for user_id, n in rows}


def _still_ours(mail: _Claimed) -> ColumnElement[bool]:
    return (
        (Notification.id == mail.id)
        & (Notification.mail_status == "sending")
        & (Notification.mail_attempts == mail.attempts)
    )


async def _settle(
    db: Database, mail: _Claimed, *, sent: bool, now: datetime, result: MailRound
) -> None:
    if sent:
        values: dict[str, object] = {
            "mail_status": "sent",
            "mailed_at": now,
            "mail_due_at": None,
            "mail_error": None,
        }
        result.sent += 1
    elif mail.attempts >= MAX_MAIL_ATTEMPTS:
        values = {
            "mail_status": "failed",
            "mail_due_at": None,
            "mail_error": f"gave up after {mail.attempts} tries: {SERVER_REFUSED}",
        }
        result.gave_up += 1
    else:
        values = {
            "mail_status": "pending",
            "mail_due_at": now + retry_after(mail.attempts),
            "mail_error": SERVER_REFUSED,
        }
        result.failed += 1
    async with db.transaction() as tx:
        await tx.execute(update(Notification).where(_still_ours(mail)).values(**values))


async def _hand_back(db: Database, unsent: list[_Claimed]) -> None:
    """Give back claims this round had no time to send: due again at once, no try counted."""
    async with db.transaction() as tx:
        for mail in unsent:
            await tx.execute(
                update(Notification)
                .where(_still_ours(mail))
                .values(
                    mail_status="pending",
                    mail_attempts=mail.attempts - 1,
                    mail_due_at=Notification.created_at,
                )
            )
