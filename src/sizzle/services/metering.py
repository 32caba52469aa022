"""The metering pass: charge every due minute of every active session, set-based.

One pass is a handful of SQL statements whatever the number of sessions: the due minutes
are generated and paid for in SQL (free minutes first, then Sizzle Lab's included minutes on
the tiers it covers, then credit, in minute order per user),
written to the ledger with the key `session:<id>:minute:<k>` (unique, so a minute can never be
charged twice), and the cached balances, `charged_minutes` and the session's split of them
(free minutes, Lab minutes, credit) are moved in the same transaction, as is the month's
spend that the monthly budget caps (services/budget.py): a minute whose credit would take the
month's spend over the budget is not charged, nor any minute of a user whose budget is reached.
No minute that starts at or after a session's idle limit is charged: the idle job pauses the
session there, and a pass that comes first must not have charged a minute of idleness.
Sessions whose next minute cannot be paid are returned to the caller, which stops them at the
end of their paid time.

On PostgreSQL every pass, from any process, holds one transaction-level advisory lock while it
spends money, so two passes never spend the same balance; the idempotency keys make a replayed
pass harmless even so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.clock import to_ms
from sizzle.db.models import GpuSession, LabSubscription, UTCDateTime
from sizzle.domain.budget import month_of
from sizzle.services import budget, ledger

METERING_LOCK_KEY = 7_301_994_002


@dataclass(frozen=True)
class MeterResult:
    minutes_charged: int
    # Sessions whose next minute was not charged; of them, those it was refused for by the
    # monthly budget (the rest had no money left for it).
    starved_session_ids: list[str]
    over_budget_session_ids: list[str] = field(default_factory=list)
    # Sessions the metering job ended for the budget (those, and the user's others).
    stopped_for_budget: list[str] = field(default_factory=list)


_DUE_MINUTES = """
WITH RECURSIVE due AS (
    SELECT s.id AS session_id, s.user_id AS user_id, s.price_micros_per_minute AS price,
           CASE WHEN s.lab_covered THEN 1 ELSE 0 END AS covered,
           s.charged_minutes + 1 AS first_minute,
           CASE WHEN s.max_minutes IS NOT NULL AND s.max_minutes < {started}
                THEN s.max_minutes ELSE {started} END AS target
    FROM gpu_sessions s
    WHERE s.status = 'active' AND s.active_since_ms IS NOT NULL {only}
),
minutes (session_id, user_id, price, covered, minute, target) AS (
    SELECT session_id, user_id, price, covered, first_minute, target
    FROM due WHERE target >= first_minute
    UNION ALL
    SELECT session_id, user_id, price, covered, minute + 1, target
    FROM minutes WHERE minute < target
),
funded AS (
    SELECT m.session_id, m.user_id, m.price, m.covered, m.minute,
           f.id AS free_account, f.balance AS free_left,
           i.id AS included_account, i.balance AS included_left,
           c.id AS credit_account, c.balance AS credit_left,
           u.monthly_budget_micros AS budget, COALESCE(b.spent_micros, 0) AS spent,
           CASE WHEN u.monthly_budget_micros IS NOT NULL
                     AND (COALESCE(b.spent_micros, 0) >= u.monthly_budget_micros
                          OR b.stopped_at_micros >= u.monthly_budget_micros)
                THEN 1 ELSE 0 END AS stopped,
           ROW_NUMBER() OVER (PARTITION BY m.user_id{c} ORDER BY m.minute, m.session_id{c}) AS n
    FROM minutes m
    JOIN ledger_accounts f ON f.user_id = m.user_id AND f.kind = 'free_minutes'
    JOIN ledger_accounts i ON i.user_id = m.user_id AND i.kind = 'included_minutes'
    JOIN ledger_accounts c ON c.user_id = m.user_id AND c.kind = 'credit'
    JOIN users u ON u.id = m.user_id
    LEFT JOIN monthly_spend b ON b.user_id = m.user_id AND b.month = :month
),
queued AS (
    SELECT funded.*,
           SUM(CASE WHEN n > free_left THEN covered ELSE 0 END) OVER (
               PARTITION BY user_id{c} ORDER BY minute, session_id{c} ROWS UNBOUNDED PRECEDING
           ) AS included_n
    FROM funded
),
sourced AS (
    SELECT queued.*,
           CASE WHEN n <= free_left THEN 'free'
                WHEN covered = 1 AND included_n <= included_left THEN 'included'
                ELSE 'credit' END AS source
    FROM queued
),
costed AS (
    SELECT sourced.*,
           SUM(CASE WHEN source = 'credit' THEN price ELSE 0 END) OVER (
               PARTITION BY user_id{c} ORDER BY minute, session_id{c} ROWS UNBOUNDED PRECEDING
           ) AS credit_needed
    FROM sourced
),
judged AS (
    SELECT costed.*,
           CASE WHEN stopped = 1 THEN 'budget'
                WHEN source <> 'credit' THEN NULL
                WHEN credit_needed > credit_left THEN 'credit'
                WHEN budget IS NOT NULL AND spent + credit_needed > budget THEN 'budget'
           END AS refused
    FROM costed
)
SELECT session_id, user_id, minute, price,
       CASE WHEN refused IS NULL THEN source END AS pay_with,
       CASE WHEN refused IS NOT NULL THEN NULL
            WHEN source = 'free' THEN free_account
            WHEN source = 'included' THEN included_account
            ELSE credit_account END AS account_id,
       refused
FROM judged
"""

# The session's idle limit, as jobs/idle.py sets it (domain/idle.py `stop_at_ms`): its last use
# (a request, "Keep it running", a busy GPU reading) plus its idle minutes; NULL for "never".
_IDLE_LIMIT_MS = "(s.last_activity_ms + s.idle_minutes * 60000)"
# Where billing has reached: now, or the idle limit if that came first. The idle pass pauses
# the session at its limit; a minute that starts at or after it is not charged (a metering
# pass may come between the limit and that pass) until a use moves the limit.
_BILLED_TO_MS = (
    f"CASE WHEN {_IDLE_LIMIT_MS} < CAST(:now_ms AS BIGINT) THEN {_IDLE_LIMIT_MS} "
    "ELSE CAST(:now_ms AS BIGINT) END"
)
# ceil(active ms / 60 000) up to there, never below zero if the clock stepped back
_STARTED_MINUTES = (
    f"((s.active_ms_before + CASE WHEN {_BILLED_TO_MS} > s.active_since_ms "
    f"THEN {_BILLED_TO_MS} - s.active_since_ms ELSE 0 END + 59999) / 60000)"
)

_WRITE_ENTRIES = """
INSERT INTO ledger_entries (idempotency_key, kind, debit_account_id, credit_account_id,
                            amount, unit, user_id, session_id, minute, created_at)
SELECT 'session:' || mc.session_id || ':minute:' || CAST(mc.minute AS VARCHAR(12)),
       'session_minute', mc.account_id,
       CASE mc.pay_with WHEN 'free' THEN CAST(:free_spent_id AS BIGINT)
                        WHEN 'included' THEN CAST(:included_spent_id AS BIGINT)
                        ELSE CAST(:revenue_id AS BIGINT) END,
       CASE WHEN mc.pay_with = 'credit' THEN mc.price ELSE 1 END,
       CASE WHEN mc.pay_with = 'credit' THEN 'usd_micros' ELSE 'minutes' END,
       mc.user_id, mc.session_id, mc.minute, :now
FROM meter_charges mc
WHERE mc.account_id IS NOT NULL
"""

_DEBIT_USERS = """
UPDATE ledger_accounts SET balance = balance - d.amount
FROM (
    SELECT account_id, SUM(CASE WHEN pay_with = 'credit' THEN price ELSE 1 END) AS amount
    FROM meter_charges
    WHERE account_id IS NOT NULL
    GROUP BY account_id
) d
WHERE ledger_accounts.id = d.account_id
"""

_CREDIT_PLATFORM = """
UPDATE ledger_accounts SET balance = balance + COALESCE((
    SELECT SUM(CASE WHEN mc.pay_with = 'credit' THEN mc.price ELSE 1 END)
    FROM meter_charges mc
    WHERE mc.pay_with = CASE ledger_accounts.id
                            WHEN CAST(:free_spent_id AS BIGINT) THEN 'free'
                            WHEN CAST(:included_spent_id AS BIGINT) THEN 'included'
                            ELSE 'credit' END
), 0)
WHERE ledger_accounts.id IN (CAST(:free_spent_id AS BIGINT), CAST(:included_spent_id AS BIGINT),
                             CAST(:revenue_id AS BIGINT))
"""

_ADVANCE_SESSIONS = """
UPDATE gpu_sessions SET charged_minutes = p.last_minute,
    free_minutes_used = gpu_sessions.free_minutes_used + p.free,
    plan_minutes_used = gpu_sessions.plan_minutes_used + p.included,
    credit_charged_micros = gpu_sessions.credit_charged_micros + p.credit
FROM (
    SELECT session_id, MAX(minute) AS last_minute,
           SUM(CASE WHEN pay_with = 'free' THEN 1 ELSE 0 END) AS free,
           SUM(CASE WHEN pay_with = 'included' THEN 1 ELSE 0 END) AS included,
           SUM(CASE WHEN pay_with = 'credit' THEN price ELSE 0 END) AS credit
    FROM meter_charges WHERE pay_with IS NOT NULL GROUP BY session_id
) p
WHERE gpu_sessions.id = p.session_id
"""


async def charge_due_minutes(
    tx: AsyncSession, *, now: datetime, session_ids: Sequence[str] | None = None
) -> MeterResult:
    """Charge every started, unpaid minute of active sessions (all, or those given).

    Sizzle Lab months that ended before `now` are closed first (`expire_included_minutes`),
    so a minute started before a month's end can use that month's minutes and none after."""
    if session_ids is not None and not session_ids:
        return MeterResult(0, [])
    await lock_billing(tx)
    closed = await expire_included_minutes(tx, now=now)
    result = await _charge(tx, now=now, session_ids=session_ids)
    if not closed.minutes_charged and not closed.starved_session_ids:
        return result
    return MeterResult(
        minutes_charged=closed.minutes_charged + result.minutes_charged,
        starved_session_ids=sorted(
            set(closed.starved_session_ids) | set(result.starved_session_ids)
        ),
        over_budget_session_ids=sorted(
            set(closed.over_budget_session_ids) | set(result.over_budget_session_ids)
        ),
    )


async def expire_included_minutes(tx: AsyncSession, *, now: datetime) -> MeterResult:
    """Close every Lab month whose included minutes ran out by `now` (`minutes_expire_at`).

    For each such moment, in order: charge the owners' sessions up to it (those minutes may
    still use the month's minutes), then expire what is left (a ledger entry keyed by the
    subscription and the moment, so it happens once). The caller holds the billing lock."""
    lapsed = list(
        await tx.scalars(
            select(LabSubscription)
            .where(LabSubscription.minutes_expire_at <= now)
            .order_by(LabSubscription.minutes_expire_at)
            .with_for_update()
        )
    )
    charged, starved, over_budget = 0, set(), set()
    for moment in sorted({sub.minutes_expire_at for sub in lapsed if sub.minutes_expire_at}):
        closing = [sub for sub in lapsed if sub.minutes_expire_at == moment]
        owners = [sub.user_id for sub in closing]
        session_ids = list(
            await tx.scalars(
                select(GpuSession.id).where(
                    GpuSession.user_id.in_(owners), GpuSession.status == "active"
                )
            )
        )
        if session_ids:
            result = await _charge(tx, now=moment, session_ids=session_ids)
            charged += result.minutes_charged
            starved.update(result.starved_session_ids)
            over_budget.update(result.over_budget_session_ids)
        for sub in closing:
            await ledger.expire_included_minutes(
                tx, sub.user_id, key=f"lab:{sub.id}:expire:{to_ms(moment)}", now=moment
            )
            sub.minutes_expire_at = None
    return MeterResult(
        minutes_charged=charged,
        starved_session_ids=sorted(starved),
        over_budget_session_ids=sorted(over_budget),
    )


async def _charge(
    tx: AsyncSession, *, now: datetime, session_ids: Sequence[str] | None
) -> MeterResult:
    dialect = dialect_of(tx)
    await _prepare_work_table(tx, dialect)

    only, params = "", {"now_ms": to_ms(now), "month": month_of(now)}
    if session_ids is not None:
        only = "AND s.id IN :ids"
    due = text(
        "INSERT INTO meter_charges "
        "(session_id, user_id, minute, price, pay_with, account_id, refused) "
        + _DUE_MINUTES.format(
            started=_STARTED_MINUTES,
            only=only,
            # Any fixed order will do for the per-user queue; byte order sorts fastest.
            c=' COLLATE "C"' if dialect == "postgresql" else "",
        )
    )
    if session_ids is not None:
        due = due.bindparams(bindparam("ids", value=list(session_ids), expanding=True))
    await tx.execute(due, params)
    if dialect == "postgresql" and session_ids is None:
        # Temp tables are never auto-analyzed; without this the planner guesses a few hundred rows.
        await tx.execute(text("ANALYZE meter_charges"))

    platform = {
        "free_spent_id": await ledger.account_id(tx, ledger.FREE_MINUTES_SPENT),
        "included_spent_id": await ledger.account_id(tx, ledger.INCLUDED_MINUTES_SPENT),
        "revenue_id": await ledger.account_id(tx, ledger.REVENUE),
    }
    written = await tx.execute(
        text(_WRITE_ENTRIES).bindparams(bindparam("now", type_=UTCDateTime)),
        {**platform, "now": now},
    )
    await tx.execute(text(_DEBIT_USERS))
    await tx.execute(text(_CREDIT_PLATFORM), platform)
    await tx.execute(text(_ADVANCE_SESSIONS))
    await budget.count_pass(tx, now=now)
    # Each session's first refused minute says why it starved: no money, or the budget.
    refusals = (
        await tx.execute(
            text(
                "SELECT DISTINCT session_id, FIRST_VALUE(refused) OVER ("
                "PARTITION BY session_id ORDER BY minute) FROM meter_charges "
                "WHERE refused IS NOT NULL"
            )
        )
    ).all()
    return MeterResult(
        minutes_charged=max(getattr(written, "rowcount", 0), 0),
        starved_session_ids=sorted(session_id for session_id, _ in refusals),
        over_budget_session_ids=sorted(
            session_id for session_id, why in refusals if why == "budget"
        ),
    )


def dialect_of(tx: AsyncSession) -> str:
    return tx.get_bind().dialect.name


async def lock_billing(tx: AsyncSession) -> None:
    """Serialize money-moving work across processes (PostgreSQL; SQLite has one writer anyway).

    Take it before any session row lock: metering takes this lock, then row locks, so every
    other writer must too, or the two could wait on each other.
    """
    if dialect_of(tx) == "postgresql":
        await tx.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": METERING_LOCK_KEY})


async def _prepare_work_table(tx: AsyncSession, dialect: str) -> None:
    """A per-connection scratch table for one pass's due minutes, emptied before each use."""
    await tx.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS meter_charges ("
            "session_id VARCHAR(32) NOT NULL, user_id VARCHAR(32) NOT NULL, "
            "minute INTEGER NOT NULL, price BIGINT NOT NULL, pay_with VARCHAR(10), "
            "account_id BIGINT, refused VARCHAR(10))"
        )
    )
    if dialect == "postgresql":
        await tx.execute(text("TRUNCATE meter_charges"))
        # The pass is a few large statements: JIT compiling them costs more than it saves,
        # and the window sorts should stay in memory.
        await tx.execute(text("SET LOCAL jit = off"))
        await tx.execute(text("SET LOCAL work_mem = '64MB'"))
    else:
        await tx.execute(text("DELETE FROM meter_charges"))
