"""Operator views: every session with its provider and attempt log, the providers' health,
purchases and their refunds."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from sizzle.api.deps import AdminUser, IdPath, PagingDep, StateDep, TxDep
from sizzle.api.openapi import error_responses
from sizzle.api.routers.billing import PurchaseOut, purchase_out
from sizzle.api.schemas import CleanStr, Page, SessionOut, usd
from sizzle.api.views import session_out
from sizzle.db.models import LaunchAttempt, Purchase, Refund, SessionEvent, User
from sizzle.domain.lifecycle import EndReason
from sizzle.domain.money import usd_to_micros
from sizzle.domain.suspension import MAX_NOTE, SuspensionReason, suspended_message
from sizzle.errors import NotFound, ValidationFailed
from sizzle.services import accounts, provider_listings, sessions
from sizzle.state import AppState

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class ListingOut(BaseModel):
    """How the reconciler's rounds have gone at listing the provider's instances."""

    failed_rounds: int = Field(description="Rounds in a row whose listing failed (0: it works).")
    blind: bool = Field(
        description="Failed for enough rounds in a row that the reconciler is blind there: "
        "orphans are not destroyed and lost sessions not noticed (the alert's threshold)."
    )
    failing_since: datetime | None = Field(description="The first failed round of the streak.")
    last_error: str | None
    last_listed_at: datetime | None
    checked_at: datetime


class ProviderOut(BaseModel):
    name: str
    label: str
    healthy: bool
    detail: str | None
    breaker: str
    disabled_reason: str | None
    last_error: str | None
    latency_ms: float | None
    offer_count: int | None
    reconciler: ListingOut | None = Field(
        description="The reconciler's listings of this provider; null before its first round."
    )


class AttemptOut(BaseModel):
    provider: str
    offer_id: str
    gpu_type: str
    gpu_count: int
    upstream_price_per_hour_usd: str
    outcome: str
    error: str | None
    at: datetime


class EventOut(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    at: datetime


class SessionDetailOut(SessionOut):
    user_id: str
    upstream_price_per_hour_usd: str | None
    attempts: list[AttemptOut]
    events: list[EventOut]


@router.get("/sessions", response_model=Page[SessionOut])
async def all_sessions(
    _admin: AdminUser, state: StateDep, tx: TxDep, paging: PagingDep
) -> Page[SessionOut]:
    rows, total = await sessions.list_sessions(
        tx, user_id=None, limit=paging.limit, offset=paging.offset
    )
    now = state.clock.now()
    return Page(items=[session_out(s, now, for_admin=True) for s in rows], total=total)


@router.get("/sessions/{session_id}", response_model=SessionDetailOut)
async def session_detail(
    session_id: IdPath, _admin: AdminUser, state: StateDep, tx: TxDep
) -> SessionDetailOut:
    session = await sessions.get_session(tx, session_id, user_id=None)
    attempts = await tx.scalars(
        select(LaunchAttempt)
        .where(LaunchAttempt.session_id == session.id)
        .order_by(LaunchAttempt.id)
    )
    events = await tx.scalars(
        select(SessionEvent).where(SessionEvent.session_id == session.id).order_by(SessionEvent.id)
    )
    upstream = session.upstream_micros_per_hour
    return SessionDetailOut(
        **session_out(session, state.clock.now(), for_admin=True).model_dump(),
        user_id=session.user_id,
        upstream_price_per_hour_usd=usd(upstream) if upstream is not None else None,
        attempts=[
            AttemptOut(
                provider=a.provider,
                offer_id=a.offer_id,
                gpu_type=a.gpu_type,
                gpu_count=a.gpu_count,
                upstream_price_per_hour_usd=usd(a.upstream_micros_per_hour),
                outcome=a.outcome,
                error=a.error,
                at=a.created_at,
            )
            for a in attempts
        ],
        events=[
            EventOut(
                from_status=e.from_status,
                to_status=e.to_status,
                actor=e.actor,
                reason=e.reason,
                at=e.created_at,
            )
            for e in events
        ],
    )


@router.get("/providers", response_model=list[ProviderOut])
async def providers(_admin: AdminUser, state: StateDep) -> list[ProviderOut]:
    plugins = list(state.providers.values())
    health = await asyncio.gather(*(plugin.health() for plugin in plugins))
    now = state.clock.now()
    async with state.db.read() as tx:
        listings = await provider_listings.listings_of(tx, [p.name for p in plugins])
    out = []
    for plugin, checked in zip(plugins, health, strict=True):
        status = state.orchestrator.status[plugin.name]
        listing = listings.get(plugin.name)
        out.append(
            ProviderOut(
                name=plugin.name,
                label=plugin.label,
                healthy=checked.healthy,
                detail=checked.detail,
                breaker=status.state(now).value,
                disabled_reason=status.disabled_reason,
                last_error=status.last_error,
                latency_ms=status.last_latency_ms,
                offer_count=status.offer_count,
                reconciler=None
                if listing is None
                else ListingOut(
                    failed_rounds=listing.failed_rounds,
                    blind=listing.failed_rounds >= provider_listings.BLIND_AFTER_ROUNDS,
                    failing_since=listing.failing_since,
                    last_error=listing.last_error,
                    last_listed_at=listing.last_listed_at,
                    checked_at=listing.checked_at,
                ),
            )
        )
    return out


class AdminPurchaseOut(PurchaseOut):
    user_id: str
    refundable_usd: str = Field(description="What can go back to the card now.")


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_usd: CleanStr | None = Field(
        None, max_length=20, description="Dollars, whole cents; omitted: all that can be."
    )
    reason: CleanStr | None = Field(None, max_length=200)


class RefundOut(BaseModel):
    id: str
    purchase_id: str
    amount_usd: str
    bonus_taken_back_usd: str
    status: str = Field(description="pending, succeeded, or failed (the credit was put back)")
    created_at: datetime


def refund_out(refund: Refund) -> RefundOut:
    return RefundOut(
        id=refund.id,
        purchase_id=refund.purchase_id,
        amount_usd=usd(refund.amount_micros),
        bonus_taken_back_usd=usd(refund.bonus_micros),
        status=refund.status,
        created_at=refund.created_at,
    )


@router.get("/purchases", response_model=Page[AdminPurchaseOut])
async def purchases(
    _admin: AdminUser,
    state: StateDep,
    paging: PagingDep,
    user_id: Annotated[CleanStr | None, Query(max_length=32)] = None,
) -> Page[AdminPurchaseOut]:
    """Purchases, newest first (one user's with `user_id`), with what is refundable now."""
    query = select(Purchase)
    count = select(func.count()).select_from(Purchase)
    if user_id:
        query = query.where(Purchase.user_id == user_id[:32])
        count = count.where(Purchase.user_id == user_id[:32])
    async with state.db.read() as tx:
        rows = list(
            await tx.scalars(
                query.order_by(Purchase.created_at.desc(), Purchase.id)
                .limit(paging.limit)
                .offset(paging.offset)
            )
        )
        total = (await tx.scalar(count)) or 0
    items = []
    for row in rows:
        _, cap = await state.payments.refunds.refundable(row.id)
        items.append(
            AdminPurchaseOut(
                **purchase_out(row).model_dump(), user_id=row.user_id, refundable_usd=usd(cap)
            )
        )
    return Page(items=items, total=total)


@router.post(
    "/purchases/{purchase_id}/refund",
    response_model=RefundOut,
    status_code=201,
    responses=error_responses(409, 503),
)
async def refund(
    purchase_id: IdPath, body: RefundIn, admin: AdminUser, state: StateDep
) -> RefundOut:
    """Give money back to the card: the credit (and the bonus in proportion) comes off the
    balance now and goes back if Stripe's refund fails. Capped at paid, not refunded and not
    yet spent."""
    amount = None
    if body.amount_usd:
        try:
            amount = usd_to_micros(body.amount_usd.strip().lstrip("$"))
        except (ValueError, ArithmeticError):
            raise ValidationFailed(
                "amount_usd is dollars, like 5 or 2.50", code="bad_refund_amount"
            ) from None
    done = await state.payments.refunds.refund(
        purchase_id[:32], amount_micros=amount, operator=f"operator:{admin.id}", reason=body.reason
    )
    return refund_out(done)


class SuspendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: SuspensionReason = Field(
        description="Why, as the user is told: acceptable_use, payment, security or other."
    )
    note: CleanStr | None = Field(
        None,
        max_length=MAX_NOTE,
        description="The operator's words, shown to the user too (needed with `other`).",
    )


class StandingOut(BaseModel):
    user_id: str
    email: str
    suspended: bool
    suspension_reason: str | None
    suspension_note: str | None
    user_message: str | None = Field(description="What the user reads when refused.")


def _standing(user: User) -> StandingOut:
    suspended = not user.is_active
    return StandingOut(
        user_id=user.id,
        email=user.email,
        suspended=suspended,
        suspension_reason=user.suspension_reason,
        suspension_note=user.suspension_note,
        user_message=(
            suspended_message(user.suspension_reason, user.suspension_note) if suspended else None
        ),
    )


async def _set_standing(
    state: AppState,
    admin: User,
    user_id: str,
    *,
    suspended: bool,
    reason: SuspensionReason | None = None,
    note: str | None = None,
) -> StandingOut:
    async with state.db.transaction() as tx:
        target = await tx.get(User, user_id, with_for_update=True)
        if target is None or target.deleted_at is not None:
            raise NotFound("There is no such user: check the id on the admin users page.")
        accounts.set_suspended(
            tx,
            target,
            suspended=suspended,
            operator=admin,
            now=state.clock.now(),
            reason=reason,
            note=note,
        )
        standing = _standing(target)
    if suspended:  # a suspended account stops paying for GPUs it can no longer reach
        await sessions.stop_sessions_of_user(
            state.db,
            state.providers,
            user_id=user_id,
            actor=f"operator:{admin.id}",
            end_reason=EndReason.ACCOUNT_SUSPENDED,
            now=state.clock.now(),
        )
    return standing


@router.post(
    "/users/{user_id}/suspend", response_model=StandingOut, responses=error_responses(409, 422)
)
async def suspend_user(
    user_id: IdPath, body: SuspendIn, admin: AdminUser, state: StateDep
) -> StandingOut:
    """Suspend an account for `reason` (and `note`), both shown to the user when refused
    (403 `account_suspended`); its running sessions are stopped. Not one's own (409)."""
    return await _set_standing(
        state, admin, user_id, suspended=True, reason=body.reason, note=body.note
    )


@router.post("/users/{user_id}/unsuspend", response_model=StandingOut)
async def unsuspend_user(user_id: IdPath, admin: AdminUser, state: StateDep) -> StandingOut:
    """Let a suspended account sign in again; its reason is cleared."""
    return await _set_standing(state, admin, user_id, suspended=False)
