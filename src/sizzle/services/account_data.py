"""What Sizzle holds about a user: all of it as one JSON document, and erasing it.

Deleting an account erases the personal data (email, name, password, the addresses and
browsers in the audit log, API key names, SSH public keys, the saved card, notifications, saved
chats) and
keeps the money: ledger entries, purchases and refunds stay, owned by the same, now anonymous,
user id, so that every balance and every statement still adds up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from sizzle.db.database import Database
from sizzle.db.models import (
    ApiKey,
    AuditEvent,
    AutoTopUp,
    ChatRequest,
    Conversation,
    GpuSession,
    LabSubscription,
    LaunchAttempt,
    LedgerEntry,
    MonthlySpend,
    Notification,
    NotificationOptOut,
    Purchase,
    QueuedLaunch,
    Refund,
    SessionEvent,
    User,
    UserSshKey,
)
from sizzle.domain.lifecycle import EndReason
from sizzle.errors import Conflict, Unauthorized
from sizzle.providers.base import Provider
from sizzle.security import verify_password
from sizzle.services import audit, chat_export, conversations, free_minutes, launch_queue, ledger
from sizzle.services.payments.lab import LIVE_STATUSES as LAB_LIVE_STATUSES
from sizzle.services.sessions import stop_sessions_of_user

EXPORT_FORMAT = 1
DELETED_PASSWORD_HASH = "!deleted"  # noqa: S105 - not an argon2 hash: no password matches
# Columns never handed out, even to their owner: secrets, and Sizzle's own bookkeeping.
_WITHHELD = {"password_hash", "key_hash", "tokens_valid_from"}


def _row(row: DeclarativeBase) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in row.__table__.columns:
        if column.key in _WITHHELD:
            continue
        value = getattr(row, column.key)
        out[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


async def export(tx: AsyncSession, user: User, *, now: datetime) -> dict[str, Any]:
    """Everything about the user, as JSON-ready data (amounts in micro-dollars or minutes)."""
    sessions = list(
        await tx.scalars(
            select(GpuSession).where(GpuSession.user_id == user.id).order_by(GpuSession.created_at)
        )
    )
    session_ids = [session.id for session in sessions]

    async def of_sessions(model: Any, order: Any) -> list[dict[str, Any]]:
        if not session_ids:
            return []
        rows = await tx.scalars(
            select(model).where(model.session_id.in_(session_ids)).order_by(order)
        )
        return [_row(row) for row in rows]

    async def owned(model: Any, order: Any) -> list[dict[str, Any]]:
        rows = await tx.scalars(select(model).where(model.user_id == user.id).order_by(order))
        return [_row(row) for row in rows]

    purchases = await owned(Purchase, Purchase.created_at)
    purchase_ids = [row["id"] for row in purchases]
    refunds = (
        [
            _row(row)
            for row in await tx.scalars(
                select(Refund).where(Refund.purchase_id.in_(purchase_ids)).order_by(Refund.id)
            )
        ]
        if purchase_ids
        else []
    )
    balances = await ledger.balances(tx, user.id)
    return {
        "format": EXPORT_FORMAT,
        "exported_at": now.isoformat(),
        "account": _row(user),
        "balances": {
            "credit_usd_micros": balances.credit_micros,
            "free_minutes": balances.free_minutes,
            "included_minutes": balances.included_minutes,
        },
        "sessions": [_row(session) for session in sessions],
        "session_events": await of_sessions(SessionEvent, SessionEvent.id),
        "launch_attempts": await of_sessions(LaunchAttempt, LaunchAttempt.id),
        "chat_requests": await of_sessions(ChatRequest, ChatRequest.id),
        "ledger_entries": await owned(LedgerEntry, LedgerEntry.id),
        "purchases": purchases,
        "refunds": refunds,
        # the budget itself is the account's monthly_budget_micros
        "monthly_spend": await owned(MonthlySpend, MonthlySpend.month),
        "auto_top_up": await owned(AutoTopUp, AutoTopUp.user_id),
        "lab_subscriptions": await owned(LabSubscription, LabSubscription.created_at),
        "api_keys": await owned(ApiKey, ApiKey.created_at),
        "ssh_keys": await owned(UserSshKey, UserSshKey.created_at),
        "notifications": await owned(Notification, Notification.created_at),
        "notification_preferences": {
            "not_mailed": sorted(
                await tx.scalars(
                    select(NotificationOptOut.kind).where(NotificationOptOut.user_id == user.id)
                )
            ),
            "still_running_every_hours": user.still_running_every_hours,
        },
        "queued_launches": await owned(QueuedLaunch, QueuedLaunch.created_at),
        "conversations": await _conversations(tx, user.id),
        "audit_events": await owned(AuditEvent, AuditEvent.id),
    }


async def _conversations(tx: AsyncSession, user_id: str) -> list[dict[str, Any]]:
    """The saved chats with their messages, oldest first."""
    rows = list(
        await tx.scalars(
            select(Conversation)
            .where(Conversation.user_id == user_id)
            .order_by(Conversation.created_at, Conversation.id)
        )
    )
    return [
        chat_export.conversation_data(row, await conversations.messages_of(tx, row.id))
        for row in rows
    ]


async def delete_account(
    db: Database,
    providers: dict[str, Provider],
    *,
    user_id: str,
    password: str,
    now: datetime,
    secret: str,
) -> None:
    """Erase the account's personal data, once the password is proven; its running sessions
    are stopped (billed to now) first. Operators and users with a Sizzle Lab plan that renews
    are refused: the first must hand over, the second cancel, before leaving."""
    async with db.read() as tx:
        user = await tx.get(User, user_id)
        if user is None or user.deleted_at is not None:
            raise Unauthorized("this account no longer exists", code="invalid_token")
        if not verify_password(user.password_hash, password):
            raise Unauthorized("your password is not right", code="invalid_credentials")
        if user.is_admin:
            raise Conflict(
                "an operator's account cannot be deleted here: ask another operator to take "
                "away the operator role first",
                code="operator_account",
            )
        renewing = await tx.scalar(
            select(LabSubscription.id).where(
                LabSubscription.user_id == user_id,
                LabSubscription.status.in_(LAB_LIVE_STATUSES),
                LabSubscription.cancel_at_period_end.is_(False),
            )
        )
        if renewing:
            raise Conflict(
                "cancel your Sizzle Lab plan first (Billing page), so no new month is charged",
                code="subscription_active",
            )
    await stop_sessions_of_user(
        db,
        providers,
        user_id=user_id,
        actor=f"user:{user_id}",
        end_reason=EndReason.ACCOUNT_DELETED,
        now=now,
    )
    async with db.transaction() as tx:
        user = await tx.get(User, user_id, with_for_update=True)
        assert user is not None  # noqa: S101 - read above; users are never removed
        # The address's keyed hash outlives it, for this alone: no free minutes twice.
        await free_minutes.remember_address(tx, user, secret=secret, now=now)
        _anonymize(user, now)
        await tx.execute(
            update(ApiKey).where(ApiKey.user_id == user_id).values(name="(deleted)", revoked_at=now)
        )
        # SSH public keys name their owner's computers (user@laptop): gone, not kept.
        await tx.execute(delete(UserSshKey).where(UserSshKey.user_id == user_id))
        # What Sizzle told the user (sessions, money) and what they asked to be mailed.
        await tx.execute(delete(Notification).where(Notification.user_id == user_id))
        await tx.execute(delete(NotificationOptOut).where(NotificationOptOut.user_id == user_id))
        # Saved chats: what the user wrote and the models answered.
        await conversations.remove_all_of_user(tx, user_id)
        # The saved card's Stripe references: nothing may charge it any more.
        await tx.execute(delete(AutoTopUp).where(AutoTopUp.user_id == user_id))
        # Nothing waits for a GPU for an account that is gone.
        await launch_queue.cancel_all_of_user(
            tx, user_id, reason="The account was deleted.", now=now
        )
        audit.record(tx, "account.deleted", actor=f"user:{user_id}", now=now, user_id=user_id)
        await tx.flush()
        # Keep what happened to the account; forget where from, and the addresses typed in.
        await tx.execute(
            update(AuditEvent)
            .where(AuditEvent.user_id == user_id)
            .values(ip=None, user_agent=None, detail=None)
        )


def _anonymize(user: User, now: datetime) -> None:
    user.email = f"deleted-{user.id}@deleted.invalid"
    user.name = None
    user.password_hash = DELETED_PASSWORD_HASH
    user.is_active = False
    user.email_verified_at = None
    user.tokens_valid_from = now
    user.deleted_at = now
