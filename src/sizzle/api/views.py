"""Domain objects to response schemas."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sizzle.api.schemas import (
    ProgressOut,
    SessionOut,
    TransactionOut,
    UserOut,
    WorkspaceOut,
    usd,
)
from sizzle.clock import from_ms, to_ms
from sizzle.db.models import GpuSession, LedgerEntry
from sizzle.domain.charges import SessionCharges
from sizzle.domain.idle import stop_at_ms
from sizzle.domain.lifecycle import SessionStatus
from sizzle.services.accounts import UserSummary
from sizzle.services.model_library import model_name
from sizzle.services.sessions import view
from sizzle.services.workspace import workspace_state


def user_out(summary: UserSummary) -> UserOut:
    user = summary.user
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        plan=user.plan,
        is_admin=user.is_admin,
        free_minutes=summary.balances.free_minutes,
        balance_usd=usd(summary.balances.credit_micros),
        created_at=user.created_at,
        email_verified=user.email_verified_at is not None,
    )


def session_out(
    session: GpuSession, now: datetime, *, for_admin: bool, warnings: list[str] | None = None
) -> SessionOut:
    seen = view(session, now)
    charges = charges_of(session)
    workspace = workspace_state(session)
    idle_stop = (
        stop_at_ms(session.last_activity_ms, session.idle_minutes)
        if session.status == SessionStatus.ACTIVE.value
        else None
    )
    return SessionOut(
        id=session.id,
        status=session.status,
        tier=session.tier,
        model=session.model,
        model_name=model_name(session.model) if session.model else None,
        provider=session.provider if for_admin else None,
        gpu_type=session.gpu_type,
        gpu_count=session.gpu_count,
        price_per_minute_usd=usd(session.price_micros_per_minute),
        max_minutes=session.max_minutes,
        idle_minutes=session.idle_minutes,
        idle_stop_at=from_ms(idle_stop) if idle_stop is not None else None,
        idle_seconds_left=max(idle_stop - to_ms(now), 0) / 1000 if idle_stop is not None else None,
        active_seconds=seen.active_ms / 1000,
        charged_minutes=session.charged_minutes,
        cost_usd=usd(seen.cost_micros),
        free_minutes_used=charges.free_minutes,
        plan_minutes_used=charges.plan_minutes,
        credit_minutes=charges.credit_minutes,
        credit_charged_micros=charges.credit_micros,
        charged_usd=usd(charges.credit_micros),
        charges_text=charges.text,
        created_at=session.created_at,
        ready_at=session.ready_at,
        started_at=session.started_at,
        ended_at=session.ended_at,
        end_reason=session.end_reason,
        error=session.last_error,
        progress=(
            ProgressOut(phase=session.progress_phase, percent=session.progress_percent)
            if session.progress_phase
            else None
        ),
        workspace=WorkspaceOut(
            chat_available=workspace.chat_available,
            message=workspace.message,
            sees_images=workspace.sees_images,
        ),
        warnings=warnings or [],
    )


def charges_of(session: GpuSession) -> SessionCharges:
    """What paid the session's charged minutes, from the counters metering keeps on it."""
    return SessionCharges.of_session(session)


def transaction_out(entry: LedgerEntry, *, user_accounts: Mapping[int, str]) -> TransactionOut:
    """One ledger entry as the user sees it; `user_accounts` maps their account ids to kinds."""
    if entry.credit_account_id in user_accounts:
        direction, balance = "in", user_accounts[entry.credit_account_id]
    elif entry.debit_account_id in user_accounts:
        direction, balance = "out", user_accounts[entry.debit_account_id]
    else:  # e.g. a Sizzle Lab payment: charged to the card, no balance moves
        direction, balance = "card", None
    return TransactionOut(
        id=entry.id,
        kind=entry.kind,
        direction=direction,
        amount=entry.amount,
        unit=entry.unit,
        balance=balance,
        amount_usd=usd(entry.amount) if entry.unit == "usd_micros" else None,
        session_id=entry.session_id,
        minute=entry.minute,
        memo=entry.memo,
        created_at=entry.created_at,
    )
