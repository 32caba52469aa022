"""The notification mail job, against the real SMTP test server on loopback: each notification
is mailed once; none after its kind is turned off; a mail server away for a while gets every
mail, once, when it is back; the hourly cap holds back all but money; two workers on
PostgreSQL send each mail once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import Notification, User
from sizzle.jobs.notification_mail import (
    MAX_MAIL_ATTEMPTS,
    SENDING_LEASE,
    MailRound,
    mail_notifications,
    retry_after,
)
from sizzle.services.mail import Mailer
from sizzle.services.notification_preferences import set_preferences
from sizzle.services.notifications import Kind, notify
from tests.helpers import make_user
from tests.smtp_inbox import Inbox, free_port

BASE = "https://gpu.example.com"


def mailer_at(port: int, tmp_path_factory: pytest.TempPathFactory) -> Mailer:
    spare = tmp_path_factory.mktemp("mail") / "mail.log"
    return Mailer(f"smtp://127.0.0.1:{port}", "Sizzle <no-reply@sizzle.test>", mail_file=spare)


@pytest.fixture
def mailer(inbox: tuple[Inbox, int], tmp_path_factory: pytest.TempPathFactory) -> Mailer:
    return mailer_at(inbox[1], tmp_path_factory)


async def tell(
    db: Database,
    user: User,
    clock: FakeClock,
    key: str,
    *,
    kind: Kind = Kind.STILL_RUNNING,
    link: str | None = "/sessions/abc",
) -> None:
    async with db.transaction() as tx:
        await notify(
            tx,
            user_id=user.id,
            kind=kind,
            key=key,
            title=f"Title {key}",
            body=f"Body of {key}.",
            now=clock.now(),
            link=link,
        )


async def mail_round(
    db: Database, mailer: Mailer, clock: FakeClock, *, per_hour: int = 12
) -> MailRound:
    return await mail_notifications(
        db, mailer, now=clock.now(), base_url=BASE, mails_per_hour=per_hour
    )


async def rows(db: Database) -> list[Notification]:
    async with db.read() as tx:
        return list(await tx.scalars(select(Notification).order_by(Notification.key)))


def text_of(message: object) -> str:
    return str(message.get_payload(decode=True).decode())  # type: ignore[attr-defined]


async def test_each_notification_is_mailed_once(
    db: Database, clock: FakeClock, mailer: Mailer, inbox: tuple[Inbox, int]
) -> None:
    user = await make_user(db, now=clock.now())
    await tell(db, user, clock, "a")
    await tell(db, user, clock, "b", kind=Kind.CREDIT_LOW, link="/billing")
    assert (await mail_round(db, mailer, clock)).sent == 2
    clock.advance(3600)
    assert (await mail_round(db, mailer, clock)).sent == 0
    got = inbox[0].to(user.email)
    assert sorted(m["Subject"] for m in got) == ["Title a", "Title b"]
    assert [(n.mail_status, n.mail_attempts, n.mailed_at) for n in await rows(db)] == [
        ("sent", 1, clock.now() - timedelta(seconds=3600))
    ] * 2


async def test_the_mail_tells_what_where_and_how_to_turn_it_off(
    db: Database, clock: FakeClock, mailer: Mailer, inbox: tuple[Inbox, int]
) -> None:
    user = await make_user(db, now=clock.now())
    await tell(db, user, clock, "plain")
    await tell(db, user, clock, "money", kind=Kind.CREDIT_LOW, link="//evil.example/x")
    await mail_round(db, mailer, clock)
    plain, money = sorted(inbox[0].to(user.email), key=lambda m: str(m["Subject"]))[::-1]
    body = text_of(plain)
    assert "Title plain" in body and "Body of plain." in body
    assert f"Open it on Sizzle: {BASE}/sessions/abc" in body
    assert f"{BASE}/account#notifications" in body and "“Still running”" in body
    money_body = text_of(money)
    assert "about your money, so it is always sent" in money_body
    assert "evil.example" not in money_body  # only paths on the site become links


async def test_a_kind_turned_off_is_not_mailed_but_stays_in_the_inbox(
    db: Database, clock: FakeClock, mailer: Mailer, inbox: tuple[Inbox, int]
) -> None:
    user = await make_user(db, now=clock.now())
    async with db.transaction() as tx:
        account = await tx.get(User, user.id)
        assert account is not None
        await set_preferences(tx, account, mailed={"still_running": False})
    await tell(db, user, clock, "reminder")
    await mail_round(db, mailer, clock)
    assert inbox[0].to(user.email) == []
    (row,) = await rows(db)
    assert (row.mail_status, row.read_at) == ("off", None)


async def test_a_mail_server_away_for_a_while_gets_each_mail_once_when_back(
    db: Database, clock: FakeClock, tmp_path_factory: pytest.TempPathFactory
) -> None:
    port = free_port()  # nothing listens there yet
    mailer = mailer_at(port, tmp_path_factory)
    user = await make_user(db, now=clock.now())
    await tell(db, user, clock, "a")
    await tell(db, user, clock, "b")
    assert (await mail_round(db, mailer, clock)).failed == 2
    first = await rows(db)
    assert {(n.mail_status, n.mail_attempts) for n in first} == {("pending", 1)}
    assert first[0].mail_due_at == clock.now() + retry_after(1)
    clock.advance(30)  # not due yet: no try
    assert (await mail_round(db, mailer, clock)) == MailRound()
    clock.advance(30)
    assert (await mail_round(db, mailer, clock)).failed == 2  # second try, server still away

    received = Inbox()
    controller = Controller(received, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        clock.advance(retry_after(2).total_seconds())
        assert (await mail_round(db, mailer, clock)).sent == 2
        clock.advance(3600)
        assert (await mail_round(db, mailer, clock)).sent == 0
    finally:
        controller.stop()
    assert sorted(m["Subject"] for m in received.to(user.email)) == ["Title a", "Title b"]
    assert {(n.mail_status, n.mail_attempts, n.mail_error) for n in await rows(db)} == {
        ("sent", 3, None)
    }


async def test_it_gives_up_after_the_last_try(
    db: Database, clock: FakeClock, tmp_path_factory: pytest.TempPathFactory
) -> None:
    mailer = mailer_at(free_port(), tmp_path_factory)
    user = await make_user(db, now=clock.now())
    await tell(db, user, clock, "a")
    outcomes = []
    for attempt in range(1, MAX_MAIL_ATTEMPTS + 1):
        outcomes.append(await mail_round(db, mailer, clock))
        clock.advance(retry_after(attempt).total_seconds())
    assert [o.failed for o in outcomes] == [1] * (MAX_MAIL_ATTEMPTS - 1) + [0]
    assert outcomes[-1].gave_up == 1
    (row,) = await rows(db)
    assert row.mail_status == "failed" and row.mail_attempts == MAX_MAIL_ATTEMPTS
    assert row.mail_error and row.mail_error.startswith(f"gave up after {MAX_MAIL_ATTEMPTS} tries")
    clock.advance(24 * 3600)
    assert await mail_round(db, mailer, clock) == MailRound()


async def test_over_the_hourly_cap_only_money_is_mailed(
    db: Database, clock: FakeClock, mailer: Mailer, inbox: tuple[Inbox, int]
) -> None:
    user = await make_user(db, now=clock.now())
    for key in ("a", "b", "c"):
        await tell(db, user, clock, key)
    await tell(db, user, clock, "d", kind=Kind.SESSION_AUTO_STOPPED)
    done = await mail_round(db, mailer, clock, per_hour=2)
    assert (done.sent, done.capped) == (3, 1)
    by_key = {n.key: n for n in await rows(db)}
    assert by_key["d"].mail_status == "sent"  # money goes, cap or not
    capped = [n for n in by_key.values() if n.mail_status == "off"]
    assert len(capped) == 1 and "2 mails in an hour" in (capped[0].mail_error or "")
    clock.advance(3601)  # a new hour: the cap counts from the last hour's mails only
    await tell(db, user, clock, "e")
    assert (await mail_round(db, mailer, clock, per_hour=2)).sent == 1
    assert len(inbox[0].to(user.email)) == 4


async def test_a_claim_whose_worker_died_is_taken_again_after_its_lease(
    db: Database, clock: FakeClock, mailer: Mailer, inbox: tuple[Inbox, int]
) -> None:
    user = await make_user(db, now=clock.now())
    await tell(db, user, clock, "a")
    async with db.transaction() as tx:  # a worker claimed it, then died before sending
        (row,) = await tx.scalars(select(Notification))
        row.mail_status, row.mail_attempts = "sending", 1
        row.mail_due_at = clock.now() + SENDING_LEASE
    assert await mail_round(db, mailer, clock) == MailRound()  # its lease still runs
    clock.advance(SENDING_LEASE.total_seconds())
    assert (await mail_round(db, mailer, clock)).sent == 1
    assert len(inbox[0].to(user.email)) == 1


async def test_a_deleted_account_is_not_mailed(
    db: Database, clock: FakeClock, mailer: Mailer, inbox: tuple[Inbox, int]
) -> None:
    user = await make_user(db, now=clock.now())
    await tell(db, user, clock, "a", kind=Kind.CREDIT_LOW)
    async with db.transaction() as tx:
        account = await tx.get(User, user.id)
        assert account is not None
        account.deleted_at = clock.now()
    assert (await mail_round(db, mailer, clock)).sent == 0
    assert inbox[0].messages == []
    assert [n.mail_status for n in await rows(db)] == ["off"]


@pytest.mark.postgres_only
async def test_two_workers_at_once_send_each_mail_once(
    db: Database,
    database_url: str,
    clock: FakeClock,
    inbox: tuple[Inbox, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    users = [await make_user(db, now=clock.now()) for _ in range(3)]
    for number in range(60):
        kind = Kind.CREDIT_LOW if number % 2 else Kind.SESSION_READY
        await tell(db, users[number % 3], clock, f"n{number:02d}", kind=kind)
    workers = [Database(database_url) for _ in range(2)]
    mailers = [mailer_at(inbox[1], tmp_path_factory) for _ in workers]
    try:
        for _ in range(4):  # rounds in both workers at once, until all is sent
            await asyncio.gather(
                *(
                    mail_round(worker, mailer, clock, per_hour=1000)
                    for worker, mailer in zip(workers, mailers, strict=True)
                )
            )
    finally:
        for worker in workers:
            await worker.dispose()
    subjects = [str(m["Subject"]) for m in inbox[0].messages]
    assert len(subjects) == 60 and len(set(subjects)) == 60
    assert {(n.mail_status, n.mail_attempts) for n in await rows(db)} == {("sent", 1)}
