"""My account: its monthly budget, everything Sizzle holds about me as JSON, and deleting it."""

from __future__ import annotations

import json
from datetime import datetime

from fastapi import APIRouter, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from sizzle.api.deps import BillingReader, CurrentUser, StateDep, client_ip
from sizzle.api.openapi import error_responses
from sizzle.api.schemas import AccountDeleteIn, CleanStr, usd
from sizzle.domain.budget import BudgetMonth, month_start, parse_budget
from sizzle.domain.limits import LimitError
from sizzle.errors import ValidationFailed
from sizzle.services import account_data, accounts, audit, budget

router = APIRouter(prefix="/api/v1/account", tags=["account"])


async def export_document(state: StateDep, user_id: str) -> Response:
    """The export as a JSON download (the API's and the account page's)."""
    now = state.clock.now()
    async with state.db.transaction() as tx:
        user = await accounts.get_active_user(tx, user_id)
        document = await account_data.export(tx, user, now=now)
        audit.record(tx, "account.exported", actor=f"user:{user.id}", now=now, user_id=user.id)
    return Response(
        json.dumps(document, indent=2, sort_keys=True),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="sizzle-data-{now:%Y%m%d}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/export",
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def export(user: CurrentUser, state: StateDep) -> Response:
    """Everything Sizzle holds about me, as one JSON document (sign-in token only)."""
    return await export_document(state, user.id)


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(409),
)
async def delete(
    body: AccountDeleteIn, user: CurrentUser, state: StateDep, request: Request
) -> None:
    """Delete my account, with my password: running sessions are stopped and billed to now,
    personal data is erased, and the ledger is kept under an anonymous id. 409 for an operator,
    or while a Sizzle Lab plan would renew."""
    async with state.rate_limiter.password_attempt(email=user.email, ip=client_ip(request)):
        await account_data.delete_account(
            state.db,
            state.providers,
            user_id=user.id,
            password=body.password,
            now=state.clock.now(),
            secret=state.settings.resolved_secret_key,
        )


class BudgetOut(BaseModel):
    monthly_budget_usd: str | None = Field(
        description="The most GPU time may cost in credit in a calendar month (UTC); "
        "null: no budget."
    )
    monthly_budget_micros: int | None
    month: str = Field(description="This month, UTC, as YYYY-MM.", examples=["2026-12"])
    month_started_at: datetime
    resets_at: datetime = Field(description="When this month's spend starts again from zero.")
    spent_usd: str = Field(
        description="What GPU minutes cost in credit this month (free and Sizzle Lab minutes "
        "are not money and do not count; minutes given back are taken off)."
    )
    spent_micros: int
    left_usd: str | None = Field(description="What is left of the budget; null: no budget.")
    left_micros: int | None
    reached: bool = Field(
        description="True while the budget is reached: running sessions are stopped and no new "
        "one starts until `resets_at` or a larger budget."
    )
    text: str = Field(description="The same in one plain sentence.")


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monthly_budget_usd: CleanStr | None = Field(
        max_length=32,
        description='Dollars as a person writes them ("25", "2.50", "2,50", "$2.50"); null or '
        '"" removes the budget.',
        examples=["25.00"],
    )


def budget_out(state: BudgetMonth) -> BudgetOut:
    return BudgetOut(
        monthly_budget_usd=None if state.budget_micros is None else usd(state.budget_micros),
        monthly_budget_micros=state.budget_micros,
        month=state.month,
        month_started_at=month_start(state.month),
        resets_at=state.resets_at,
        spent_usd=usd(state.spent_micros),
        spent_micros=state.spent_micros,
        left_usd=None if state.left_micros is None else usd(state.left_micros),
        left_micros=state.left_micros,
        reached=state.reached,
        text=state.line,
    )


@router.get("/budget", response_model=BudgetOut)
async def get_budget(user: BillingReader, state: StateDep) -> BudgetOut:
    """My monthly budget, this calendar month's spend (UTC), what is left, and when it resets."""
    async with state.db.read() as tx:
        return budget_out(await budget.month_state(tx, user.id, now=state.clock.now()))


@router.put("/budget", response_model=BudgetOut, responses=error_responses(422))
async def put_budget(body: BudgetIn, user: CurrentUser, state: StateDep) -> BudgetOut:
    """Set my monthly budget, or remove it with null or "". When GPU time has cost this much
    credit in a calendar month (UTC), running sessions stop and none starts until the next
    month or a larger budget; warnings come at 75 % and 90 %. 422 `invalid_budget` for an
    amount that cannot be used, saying what to enter."""
    try:
        micros = parse_budget(body.monthly_budget_usd or "")
    except LimitError as exc:
        raise ValidationFailed(
            exc.message, code="invalid_budget", details={"field": "monthly_budget_usd"}
        ) from None
    async with state.db.transaction() as tx:
        found = await budget.set_budget(tx, user.id, micros, now=state.clock.now())
    return budget_out(found)
