"""Sizzle Lab, the monthly plan, as the API shows it: the plan, my subscription, subscribing
through Stripe Checkout, cancelling at the end of the month and taking that back."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from sizzle.api.deps import BillingReader, CurrentUser, StateDep
from sizzle.api.openapi import error_responses
from sizzle.api.routers.billing import return_urls
from sizzle.api.schemas import usd
from sizzle.domain.lab import LAB_NAME
from sizzle.services import ledger
from sizzle.state import AppState

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])


class LabPlanOut(BaseModel):
    name: str
    price_usd: str = Field(description="Charged to the card each month.")
    included_minutes: int = Field(description="GPU minutes included each month.")
    tiers: list[str] = Field(description="The tiers included minutes pay for.")


class SubscriptionOut(BaseModel):
    id: str
    status: str = Field(description="Stripe's: active, past_due, canceled, ...")
    included_minutes_left: int
    current_period_end: datetime | None = Field(description="When this month's minutes end.")
    cancel_at_period_end: bool
    last_error: str | None = Field(description="Why the last payment failed, if it did.")


class LabOut(BaseModel):
    payments_enabled: bool
    plan: LabPlanOut
    subscription: SubscriptionOut | None


class SubscribeOut(BaseModel):
    subscription_id: str
    url: str = Field(description="Stripe's checkout page: send the browser there.")


async def lab_out(state: AppState, user_id: str) -> LabOut:
    plan = state.settings.lab
    current = await state.payments.lab.current(user_id)
    subscription = None
    if current is not None:
        async with state.db.read() as tx:
            funds = await ledger.balances(tx, user_id)
        subscription = SubscriptionOut(
            id=current.id,
            status=current.status,
            included_minutes_left=funds.included_minutes,
            current_period_end=current.current_period_end,
            cancel_at_period_end=current.cancel_at_period_end,
            last_error=current.last_error,
        )
    return LabOut(
        payments_enabled=state.payments.configured,
        plan=LabPlanOut(
            name=LAB_NAME,
            price_usd=usd(plan.price_micros),
            included_minutes=plan.included_minutes,
            tiers=list(plan.tiers),
        ),
        subscription=subscription,
    )


@router.get("/subscription", response_model=LabOut)
async def get_subscription(user: BillingReader, state: StateDep) -> LabOut:
    """Sizzle Lab, the monthly plan, and my subscription to it (null if none)."""
    return await lab_out(state, user.id)


@router.post(
    "/subscription",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscribeOut,
    responses=error_responses(409, 503),
)
async def subscribe(user: CurrentUser, state: StateDep) -> SubscribeOut:
    """Open a Stripe Checkout page for Sizzle Lab. Included minutes arrive when Stripe says the
    month is paid. 409 `already_subscribed`; 503 where payments are not set up."""
    success, cancel = return_urls(state, success="/billing?plan=welcome", cancel="/billing")
    started = await state.payments.lab.start_checkout(user, success_url=success, cancel_url=cancel)
    return SubscribeOut(subscription_id=started.purchase_id, url=started.url)


@router.delete("/subscription", response_model=LabOut, responses=error_responses(404, 409, 503))
async def cancel_subscription(user: CurrentUser, state: StateDep) -> LabOut:
    """Cancel at the end of the paid month: the month's minutes stay until then, and nothing
    more is charged. 404 `no_subscription`."""
    await state.payments.lab.set_cancel_at_period_end(user.id, cancel=True)
    return await lab_out(state, user.id)


@router.post(
    "/subscription/resume", response_model=LabOut, responses=error_responses(404, 409, 503)
)
async def resume_subscription(user: CurrentUser, state: StateDep) -> LabOut:
    """Take back a cancellation before the month ends."""
    await state.payments.lab.set_cancel_at_period_end(user.id, cancel=False)
    return await lab_out(state, user.id)
