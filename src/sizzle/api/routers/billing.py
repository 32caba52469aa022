"""Balance and the ledger as the user sees them, and buying credit through Stripe."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from sizzle.api.deps import BillingReader, CurrentUser, IdPath, PagingDep, StateDep, TxDep
from sizzle.api.openapi import error_responses
from sizzle.api.schemas import BalanceOut, CleanStr, Page, TransactionOut, usd
from sizzle.api.views import transaction_out
from sizzle.db.models import AutoTopUp, Purchase
from sizzle.domain.money import usd_to_micros
from sizzle.errors import BadRequest, ValidationFailed
from sizzle.services import ledger, statements
from sizzle.state import AppState

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])


@router.get("/balance", response_model=BalanceOut)
async def balance(user: BillingReader, tx: TxDep) -> BalanceOut:
    funds = await ledger.balances(tx, user.id)
    return BalanceOut(
        balance_usd=usd(funds.credit_micros),
        balance_micros=funds.credit_micros,
        free_minutes=funds.free_minutes,
        included_minutes=funds.included_minutes,
    )


@router.get("/transactions", response_model=Page[TransactionOut])
async def transactions(user: BillingReader, tx: TxDep, paging: PagingDep) -> Page[TransactionOut]:
    entries, total = await ledger.list_entries(
        tx, user.id, limit=paging.limit, offset=paging.offset
    )
    mine = await ledger.user_accounts(tx, user.id)
    return Page(items=[transaction_out(e, user_accounts=mine) for e in entries], total=total)


class PackageOut(BaseModel):
    id: str
    price_usd: str
    bonus_percent: int
    credit_usd: str = Field(description="What lands on the balance: the price plus the bonus.")


class PackagesOut(BaseModel):
    payments_enabled: bool = Field(description="False until Stripe is set up here.")
    items: list[PackageOut]


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    package: CleanStr = Field(max_length=32)


class CheckoutOut(BaseModel):
    purchase_id: str
    url: str = Field(description="Stripe's checkout page: send the browser there.")


class PurchaseOut(BaseModel):
    id: str
    package: str
    status: str = Field(description="open, paid or failed")
    paid_usd: str
    credit_usd: str
    created_at: datetime
    paid_at: datetime | None


def purchase_out(purchase: Purchase) -> PurchaseOut:
    return PurchaseOut(
        id=purchase.id,
        package=purchase.package,
        status=purchase.status,
        paid_usd=usd(purchase.paid_micros),
        credit_usd=usd(purchase.credit_micros),
        created_at=purchase.created_at,
        paid_at=purchase.paid_at,
    )


@router.get("/packages", response_model=PackagesOut)
async def packages(state: StateDep) -> PackagesOut:
    return PackagesOut(
        payments_enabled=state.payments.configured,
        items=[
            PackageOut(
                id=p.id,
                price_usd=usd(p.price_micros),
                bonus_percent=p.bonus_percent,
                credit_usd=usd(p.credit_micros),
            )
            for p in state.payments.packages.values()
        ],
    )


def return_urls(state: AppState, *, success: str, cancel: str) -> tuple[str, str]:
    """Where Stripe sends the browser back: under SIZZLE_PUBLIC_URL, never the request's Host."""
    base = state.settings.public_base_url
    return f"{base}{success}", f"{base}{cancel}"


@router.post(
    "/checkout",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckoutOut,
    responses=error_responses(404, 503),
)
async def checkout(body: CheckoutIn, user: CurrentUser, state: StateDep) -> CheckoutOut:
    """Open a Stripe Checkout page for a package; the credit lands once Stripe says it is paid.
    503 `payments_not_configured` where Stripe is not set up."""
    success, cancel = return_urls(
        state, success="/billing/return?purchase={PURCHASE_ID}", cancel="/billing"
    )
    started = await state.payments.start_checkout(
        user, body.package, success_url=success, cancel_url=cancel
    )
    return CheckoutOut(purchase_id=started.purchase_id, url=started.url)


@router.get("/purchases/{purchase_id}", response_model=PurchaseOut)
async def purchase(purchase_id: IdPath, user: BillingReader, state: StateDep) -> PurchaseOut:
    """One purchase of mine, asking Stripe if it is still open."""
    return purchase_out(await state.payments.refresh(purchase_id, user_id=user.id))


@router.post(
    "/webhook",
    responses=error_responses(503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
            "description": "A Stripe event, signed in the Stripe-Signature header.",
        }
    },
)
async def webhook(request: Request, state: StateDep) -> dict[str, str]:
    """Stripe's events. The signature is checked on the raw body; a forged or stale one is a
    400 and changes nothing."""
    payload = await request.body()
    if len(payload) > 1_000_000:
        raise BadRequest("the event is too large", code="bad_payload")
    signature = request.headers.get("stripe-signature", "")
    return {"result": await state.payments.handle_webhook(payload, signature)}


class StatementLineOut(BaseModel):
    date: datetime
    what: str
    amount_usd: str = Field(description="Positive into the balance, negative out of it.")
    session_id: str | None


class SessionUseOut(BaseModel):
    session_id: str
    tier: str
    model: str | None
    minutes: int = Field(description="Minutes paid with credit.")
    free_minutes: int
    included_minutes: int = Field(description="Minutes paid with Sizzle Lab's minutes.")
    cost_usd: str = Field(description="What credit paid (less minutes given back this month).")
    charges_text: str = Field(
        description="The same in words, as the pages say it, e.g. "
        "'2 free minutes used · $0.45 charged for 3 minutes'."
    )


class PlanPaymentOut(BaseModel):
    date: datetime
    what: str
    amount_usd: str = Field(description="Charged to the card, not to the balance.")


class StatementOut(BaseModel):
    month: str
    opening_balance_usd: str
    money_in_usd: str
    gpu_time_usd: str
    closing_balance_usd: str
    lines: list[StatementLineOut]
    sessions: list[SessionUseOut]
    plan_payments: list[PlanPaymentOut]


@router.get(
    "/statements/{month}",
    response_model=StatementOut,
    responses={200: {"content": {"text/csv": {}, "application/pdf": {}}}},
)
async def statement(
    month: Annotated[str, Path(pattern=r"^\d{4}-\d{2}$")],
    user: BillingReader,
    state: StateDep,
    format: Annotated[str, Query(pattern="^(json|csv|pdf)$")] = "json",
) -> Any:
    """One UTC month of my credit: opening and closing balance and every movement; as JSON,
    CSV or PDF. The figures add up to the ledger to the cent."""
    async with state.db.read() as tx:
        found = await statements.monthly_statement(tx, user, month)
    if format in ("csv", "pdf"):
        return statement_download(found, format)
    return StatementOut(
        month=found.month,
        opening_balance_usd=usd(found.opening_micros),
        money_in_usd=usd(sum(line.amount_micros for line in found.lines if line.amount_micros > 0)),
        gpu_time_usd=usd(found.gpu_cost_micros),
        closing_balance_usd=usd(found.closing_micros),
        lines=[
            StatementLineOut(
                date=line.when,
                what=line.what,
                amount_usd=statements.signed_usd(line.amount_micros),
                session_id=line.session_id,
            )
            for line in found.lines
        ],
        sessions=[
            SessionUseOut(
                session_id=use.session_id,
                tier=use.tier,
                model=use.model,
                minutes=use.minutes,
                free_minutes=use.free_minutes,
                included_minutes=use.included_minutes,
                cost_usd=usd(use.cost_micros),
                charges_text=use.text,
            )
            for use in found.sessions
        ],
        plan_payments=[
            PlanPaymentOut(date=p.when, what=p.what, amount_usd=usd(p.amount_micros))
            for p in found.plan_payments
        ],
    )


@router.get(
    "/purchases/{purchase_id}/receipt", responses={200: {"content": {"application/pdf": {}}}}
)
async def receipt(purchase_id: IdPath, user: BillingReader, state: StateDep) -> Response:
    """The PDF receipt of a paid purchase of mine."""
    return await receipt_download(state, purchase_id, user_id=user.id)


def statement_download(found: statements.Statement, kind: str) -> Response:
    """A statement as a CSV or PDF attachment (the API's and the billing page's)."""
    if kind == "csv":
        body: bytes | str = statements.statement_csv(found)
        media = "text/csv"
    else:
        body, media = statements.statement_pdf(found), "application/pdf"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="sizzle-{found.month}.{kind}"'},
    )


async def receipt_download(state: AppState, purchase_id: str, *, user_id: str) -> Response:
    """The PDF receipt of one of the user's paid purchases, as an attachment."""
    async with state.db.read() as tx:
        pdf = await statements.receipt_pdf(tx, purchase_id[:64], user_id=user_id)
    name = f"sizzle-receipt-{purchase_id[:32]}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


class AutoTopUpOut(BaseModel):
    enabled: bool
    threshold_usd: str = Field(description="A charge that leaves the credit below this tops up.")
    package: str
    card: str | None = Field(description="The saved card, if any; none means buy once first.")
    failures: int
    last_error: str | None


class AutoTopUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: StrictBool
    threshold_usd: CleanStr = Field(max_length=20)
    package: CleanStr = Field(max_length=32)


def auto_top_up_out(row: AutoTopUp | None, state: AppState) -> AutoTopUpOut:
    if row is None:
        cheapest = min(state.payments.packages.values(), key=lambda p: p.price_micros)
        return AutoTopUpOut(
            enabled=False,
            threshold_usd="5.00",
            package=cheapest.id,
            card=None,
            failures=0,
            last_error=None,
        )
    return AutoTopUpOut(
        enabled=row.enabled,
        threshold_usd=usd(row.threshold_micros),
        package=row.package,
        card=row.card_label or ("saved card" if row.payment_method_id else None),
        failures=row.failures,
        last_error=row.last_error,
    )


@router.get("/auto-top-up", response_model=AutoTopUpOut)
async def get_auto_top_up(user: BillingReader, state: StateDep) -> AutoTopUpOut:
    return auto_top_up_out(await state.payments.top_ups.get(user.id), state)


@router.put("/auto-top-up", response_model=AutoTopUpOut, responses=error_responses(404, 409, 503))
async def put_auto_top_up(body: AutoTopUpIn, user: CurrentUser, state: StateDep) -> AutoTopUpOut:
    """Turn auto-top-up on or off: when a charge leaves the credit below the threshold, the card
    saved at the last purchase is charged for the package, once per crossing. 409
    `no_saved_card` until a purchase by card has saved one."""
    state.payments.stripe_client()  # 503 where payments are not set up
    try:
        threshold = usd_to_micros(body.threshold_usd.strip().lstrip("$"))
    except (ValueError, ArithmeticError):
        raise ValidationFailed(
            "threshold_usd is dollars, like 5 or 2.50", code="bad_threshold"
        ) from None
    row = await state.payments.top_ups.configure(
        user, enabled=body.enabled, threshold_micros=threshold, package_id=body.package
    )
    return auto_top_up_out(row, state)
