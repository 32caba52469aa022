"""The audit log: who did what, from which address and browser, and when.

Events are written in the same transaction as the change they describe, so the log never
claims a change that was rolled back, nor misses one that was made. A refused attempt (a
failed sign-in) has no change to ride along with and is written in a transaction of its own.

The operator's view reads ledger entries beside the events: the ledger is already an
immutable, keyed record of every movement of money and minutes, so it is not copied.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, String, cast, func, literal, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.database import Database
from sizzle.db.models import AuditEvent, LedgerEntry

LEDGER_PREFIX = "ledger."
LEDGER_ACTOR = "ledger"
MAX_USER_AGENT = 300
MAX_IP = 64  # the column's size; an IPv6 literal with a zone is at most about 60
_CONTROL_CHARACTERS = dict.fromkeys([*range(32), 127])  # a NUL PostgreSQL refuses, and kin
MAX_DETAIL = 500


@dataclass(frozen=True)
class Origin:
    """Where a request came from, as the audit log keeps it."""

    ip: str | None
    user_agent: str | None


# The ASGI scope of the HTTP request being served, set by the request middleware (None in
# background jobs): the origin is worked out from it only when an event is recorded, which
# few requests do.
request_scope: ContextVar[dict[str, Any] | None] = ContextVar("sizzle_request_scope", default=None)


def origin_from_scope(scope: dict[str, Any]) -> Origin:
    """The request's address and browser, fit for their columns whatever was sent."""
    client = scope.get("client")
    headers = dict(scope.get("headers") or [])
    agent = headers.get(b"user-agent", b"").decode("latin-1").translate(_CONTROL_CHARACTERS)
    return Origin(
        ip=ip_literal(client[0]) if client else None, user_agent=agent[:MAX_USER_AGENT] or None
    )


def ip_literal(host: object) -> str | None:
    """The client's address as an IP literal, or None: behind a proxy it comes from the
    X-Forwarded-For text, which can be anything, of any length."""
    if not isinstance(host, str) or len(host) > MAX_IP:
        return None
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        return None
    return address if len(address) <= MAX_IP else None


def record(
    tx: AsyncSession,
    action: str,
    *,
    actor: str,
    now: datetime,
    user_id: str | None = None,
    target: str | None = None,
    detail: str | None = None,
) -> None:
    """Add an event to the transaction: it is kept if, and only if, the transaction commits."""
    scope = request_scope.get()
    origin = origin_from_scope(scope) if scope is not None else None
    tx.add(
        AuditEvent(
            created_at=now,
            action=action,
            actor=actor,
            user_id=user_id,
            target=target,
            ip=origin.ip if origin else None,
            user_agent=origin.user_agent if origin else None,
            detail=detail[:MAX_DETAIL] if detail else None,
        )
    )


async def record_alone(db: Database, action: str, **fields: Any) -> None:
    """An event that no change comes with (a refused sign-in), in its own transaction."""
    async with db.transaction() as tx:
        record(tx, action, **fields)


# -- the operator's view ---------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None  # "auth." matches every action starting so; "auth.sign_in" one
    actor: str | None = None
    user_id: str | None = None
    ip: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditRow:
    at: datetime
    action: str
    actor: str
    user_id: str | None
    target: str | None
    ip: str | None
    user_agent: str | None
    detail: str | None


def _parts(where: AuditFilter) -> list[Select[Any]]:
    """The events and the ledger entries that match, as one or two selects of the same shape."""
    events: Select[Any] = select(  # type: ignore[assignment]
        AuditEvent.created_at.label("at"),
        AuditEvent.id.label("seq"),
        literal(1).label("source"),
        AuditEvent.action.label("action"),
        AuditEvent.actor.label("actor"),
        AuditEvent.user_id.label("user_id"),
        AuditEvent.target.label("target"),
        AuditEvent.ip.label("ip"),
        AuditEvent.user_agent.label("user_agent"),
        AuditEvent.detail.label("detail"),
    )
    entries: Select[Any] = select(  # type: ignore[assignment]
        LedgerEntry.created_at.label("at"),
        LedgerEntry.id.label("seq"),
        literal(2).label("source"),
        (literal(LEDGER_PREFIX) + LedgerEntry.kind).label("action"),
        literal(LEDGER_ACTOR).label("actor"),
        LedgerEntry.user_id.label("user_id"),
        (literal("session:") + LedgerEntry.session_id).label("target"),
        cast(None, String).label("ip"),
        cast(None, String).label("user_agent"),
        (
            cast(LedgerEntry.amount, String)
            + literal(" ")
            + LedgerEntry.unit
            + literal(" · ")
            + func.coalesce(LedgerEntry.memo, LedgerEntry.idempotency_key)
        ).label("detail"),
    )
    action = where.action or ""
    is_ledger_action = action.startswith(LEDGER_PREFIX)
    parts: list[Select[Any]] = []
    # Each side is left out when the filters cannot match it: the ledger has no address and
    # no actor but itself, and its actions are exactly those starting `ledger.`.
    if not is_ledger_action:
        if action:
            events = events.where(_matches(AuditEvent.action, action))
        if where.actor:
            events = events.where(AuditEvent.actor == where.actor)
        if where.ip:
            events = events.where(AuditEvent.ip == where.ip)
        parts.append(_common(events, AuditEvent.created_at, AuditEvent.user_id, where))
    if (not action or is_ledger_action) and not where.ip and where.actor in (None, LEDGER_ACTOR):
        kind = action.removeprefix(LEDGER_PREFIX)
        if kind:
            entries = entries.where(_matches(LedgerEntry.kind, kind))
        parts.append(_common(entries, LedgerEntry.created_at, LedgerEntry.user_id, where))
    if not parts:  # a ledger action asked of someone other than the ledger: nothing
        parts.append(events.where(literal(False)))
    return parts


def _matches(column: Any, wanted: str) -> Any:
    """One action, or a family of them when `wanted` ends with a dot."""
    if wanted.endswith("."):
        return column.startswith(wanted, autoescape=True)
    return column == wanted


def _common(part: Select[Any], at: Any, user: Any, where: AuditFilter) -> Select[Any]:
    if where.user_id:
        part = part.where(user == where.user_id)
    if where.since:
        part = part.where(at >= where.since)
    if where.until:
        part = part.where(at < where.until)
    return part


async def search(
    tx: AsyncSession, where: AuditFilter, *, limit: int, offset: int
) -> tuple[list[AuditRow], int]:
    """A page of the log, newest first, and how many rows match in all.

    Each side is counted on its own and gives only its own newest `offset + limit` rows to the
    union, so neither is sorted whole: a page costs what reading that far into each side does.
    """
    parts = _parts(where)
    total = 0
    for part in parts:
        total += await tx.scalar(select(func.count()).select_from(part.subquery())) or 0
    newest = [
        select(part.order_by(text("at DESC"), text("seq DESC")).limit(offset + limit).subquery())
        for part in parts
    ]
    union = union_all(*newest).subquery()
    rows = await tx.execute(
        select(union)
        .order_by(union.c.at.desc(), union.c.source, union.c.seq.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_row(row) for row in rows.mappings()], total


async def every_row(tx: AsyncSession, where: AuditFilter, *, most: int) -> list[AuditRow]:
    rows, _ = await search(tx, where, limit=most, offset=0)
    return rows


def _row(row: Any) -> AuditRow:
    at = row["at"]
    if isinstance(at, str):  # SQLite hands back text from a union
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return AuditRow(
        at=at,
        action=row["action"],
        actor=row["actor"],
        user_id=row["user_id"],
        target=row["target"],
        ip=row["ip"],
        user_agent=row["user_agent"],
        detail=row["detail"],
    )


CSV_COLUMNS: Sequence[str] = (
    "at",
    "action",
    "actor",
    "user_id",
    "target",
    "ip",
    "user_agent",
    "detail",
)


def _cell(value: object) -> str:
    if isinstance(value, datetime):
        text = value.isoformat()
    else:
        text = "" if value is None else str(value)
    # A spreadsheet must not run a cell that a user typed (their name, their browser) as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def as_csv(rows: Iterable[AuditRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(getattr(row, column)) for column in CSV_COLUMNS])
    return out.getvalue()
