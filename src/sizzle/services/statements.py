"""Monthly statements and purchase receipts, read straight from the ledger.

A statement covers one UTC calendar month of a user's credit: the opening balance (every
entry before the month), each movement in it (purchases and their bonus, refunds, grants,
GPU time per session, minutes given back), and the closing balance; Sizzle Lab payments,
charged to the card rather than the balance, are listed apart. Opening plus money in
minus money out is the closing balance, to the micro-dollar, or the statement is not made.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import GpuSession, LedgerEntry, Purchase, User
from sizzle.domain.charges import SessionCharges, count, dollars
from sizzle.domain.money import usd_text
from sizzle.errors import NotFound, ValidationFailed
from sizzle.services import ledger

if TYPE_CHECKING:
    from fpdf import FPDF

# Ledger kinds, in words a customer reads.
KIND_LABELS = {
    "purchase": "Credit bought",
    "purchase_bonus": "Package bonus",
    "refund": "Refund to card",
    "refund_bonus": "Package bonus taken back",
    "refund_restored": "Refund failed: credit restored",
    "credit_grant": "Credit added by Sizzle",
    "session_minute_refund": "GPU time given back",
}


@dataclass(frozen=True)
class Line:
    when: datetime
    what: str
    amount_micros: int  # positive: into the balance; negative: out of it
    session_id: str | None = None


@dataclass
class SessionUse:
    session_id: str
    tier: str
    model: str | None
    minutes: int = 0
    cost_micros: int = 0
    free_minutes: int = 0
    included_minutes: int = 0  # paid with Sizzle Lab's minutes

    @property
    def text(self) -> str:
        """What paid it this month, as every page says it (domain/charges.py); minutes charged
        in an earlier month and given back in this one are told as given back."""
        if self.minutes < 0 or self.cost_micros < 0:
            back = f"{count(-self.minutes, 'minute')} given back · {dollars(-self.cost_micros)}"
            return f"{back} back to your credit"
        return SessionCharges(
            free_minutes=self.free_minutes,
            plan_minutes=self.included_minutes,
            credit_minutes=self.minutes,
            credit_micros=self.cost_micros,
        ).text


@dataclass
class Statement:
    user_email: str
    month: str  # YYYY-MM
    start: datetime
    end: datetime
    opening_micros: int
    closing_micros: int
    lines: list[Line] = field(default_factory=list)
    sessions: list[SessionUse] = field(default_factory=list)
    # Sizzle Lab payments: charged to the card, not to the balance, so outside its arithmetic
    plan_payments: list[Line] = field(default_factory=list)

    @property
    def money_in_micros(self) -> int:
        return sum(line.amount_micros for line in self.lines if line.amount_micros > 0)

    @property
    def money_out_micros(self) -> int:
        return -sum(line.amount_micros for line in self.lines if line.amount_micros < 0)

    @property
    def gpu_cost_micros(self) -> int:
        return sum(use.cost_micros for use in self.sessions)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a YYYY-MM month in UTC; 422 for anything else."""
    try:
        year, number = (int(part) for part in month.split("-"))
        start = datetime(year, number, 1, tzinfo=UTC)
        end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    except ValueError:  # not a month, or one whose end datetime cannot hold (9999-12)
        raise ValidationFailed(f"{month!r} is not a month like 2026-03", code="bad_month") from None
    return start, end


async def monthly_statement(tx: AsyncSession, user: User, month: str) -> Statement:
    start, end = month_bounds(month)
    credit_id = await ledger.account_id(tx, ledger.credit_account_name(user.id))
    free_id = await ledger.account_id(tx, ledger.free_minutes_account_name(user.id))
    included_id = await ledger.account_id(tx, ledger.included_minutes_account_name(user.id))
    plan_id = await ledger.account_id(tx, ledger.SUBSCRIPTIONS)
    signed = case(
        (LedgerEntry.credit_account_id == credit_id, LedgerEntry.amount),
        else_=-LedgerEntry.amount,
    )
    mine = (LedgerEntry.credit_account_id == credit_id) | (
        LedgerEntry.debit_account_id == credit_id
    )
    opening = (
        await tx.scalar(
            select(func.coalesce(func.sum(signed), 0)).where(mine, LedgerEntry.created_at < start)
        )
    ) or 0
    entries = list(
        await tx.scalars(
            select(LedgerEntry)
            .where(
                mine
                | LedgerEntry.debit_account_id.in_((free_id, included_id))
                | ((LedgerEntry.credit_account_id == plan_id) & (LedgerEntry.user_id == user.id)),
                LedgerEntry.created_at >= start,
                LedgerEntry.created_at < end,
            )
            .order_by(LedgerEntry.created_at, LedgerEntry.id)
        )
    )
    statement = Statement(
        user_email=user.email,
        month=month,
        start=start,
        end=end,
        opening_micros=int(opening),
        closing_micros=int(opening),
    )
    uses: dict[str, SessionUse] = {}
    moved = 0
    for entry in entries:
        if entry.debit_account_id == free_id:  # a minute paid with free minutes
            if entry.kind == "session_minute" and entry.session_id:
                _use(uses, entry.session_id).free_minutes += entry.amount
            continue
        if entry.debit_account_id == included_id:  # paid with Lab minutes (or they expired)
            if entry.kind == "session_minute" and entry.session_id:
                _use(uses, entry.session_id).included_minutes += entry.amount
            continue
        if entry.credit_account_id == plan_id:
            statement.plan_payments.append(
                Line(
                    when=entry.created_at,
                    what=entry.memo or "Sizzle Lab",
                    amount_micros=entry.amount,
                )
            )
            continue
        amount = entry.amount if entry.credit_account_id == credit_id else -entry.amount
        moved += amount
        if entry.kind == "session_minute" and entry.session_id:
            use = _use(uses, entry.session_id)
            use.minutes += 1
            use.cost_micros += entry.amount
            continue
        if entry.kind == "session_minute_refund" and entry.session_id:
            use = _use(uses, entry.session_id)
            use.minutes -= 1
            use.cost_micros -= entry.amount
            continue
        statement.lines.append(
            Line(
                when=entry.created_at,
                what=KIND_LABELS.get(entry.kind, entry.kind.replace("_", " ").capitalize()),
                amount_micros=amount,
                session_id=entry.session_id,
            )
        )
    closing = (
        await tx.scalar(
            select(func.coalesce(func.sum(signed), 0)).where(mine, LedgerEntry.created_at < end)
        )
    ) or 0
    if uses:
        rows = await tx.execute(
            select(GpuSession.id, GpuSession.tier, GpuSession.model).where(
                GpuSession.id.in_(list(uses))
            )
        )
        for session_id, tier, model in rows:
            uses[session_id].tier, uses[session_id].model = tier, model
    statement.sessions = sorted(uses.values(), key=lambda use: use.session_id)
    statement.closing_micros = int(closing)
    gpu = statement.gpu_cost_micros
    in_lines = sum(line.amount_micros for line in statement.lines)
    if statement.opening_micros + in_lines - gpu != statement.closing_micros or (
        in_lines - gpu != moved
    ):
        raise RuntimeError(f"statement {month} of {user.id} does not add up to the ledger")
    return statement


def _use(uses: dict[str, SessionUse], session_id: str) -> SessionUse:
    if session_id not in uses:
        uses[session_id] = SessionUse(session_id=session_id, tier="", model=None)
    return uses[session_id]


def statement_csv(statement: Statement) -> str:
    """One row per movement, GPU time one row per session, opening and closing rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["date", "what", "session", "minutes", "amount_usd"])
    writer.writerow(
        [
            statement.start.date().isoformat(),
            "Opening balance",
            "",
            "",
            usd_text(statement.opening_micros),
        ]
    )
    for line in statement.lines:
        writer.writerow(
            [
                line.when.date().isoformat(),
                line.what,
                line.session_id or "",
                "",
                signed_usd(line.amount_micros),
            ]
        )
    for use in statement.sessions:
        what = f"GPU time, {use.tier}" + (f", {use.model}" if use.model else "")
        what += f": {use.text}"
        writer.writerow(["", what, use.session_id, use.minutes, signed_usd(-use.cost_micros)])
    writer.writerow(
        [
            (statement.end.date().isoformat()),
            "Closing balance",
            "",
            "",
            usd_text(statement.closing_micros),
        ]
    )
    for payment in statement.plan_payments:
        writer.writerow(
            [
                payment.when.date().isoformat(),
                f"Paid by card, not from the balance: {payment.what}",
                "",
                "",
                usd_text(payment.amount_micros),
            ]
        )
    return out.getvalue()


def signed_usd(micros: int) -> str:
    """'-0.45' or '22.00'."""
    return f"-{usd_text(-micros)}" if micros < 0 else usd_text(micros)


def _pdf(title: str) -> FPDF:
    # imported here, when a PDF is made: fpdf (and Pillow under it) costs a third of a second
    # at every start of a process that may never make one
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(title)
    pdf.set_author("Sizzle")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, "Sizzle", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    return pdf


def _row(pdf: FPDF, left: str, right: str, *, bold: bool = False) -> None:
    pdf.set_font("Helvetica", "B" if bold else "", 10)
    pdf.cell(140, 6, left[:90])
    pdf.cell(0, 6, right, align="R", new_x="LMARGIN", new_y="NEXT")


def statement_pdf(statement: Statement) -> bytes:
    pdf = _pdf(f"Sizzle statement {statement.month}")
    pdf.cell(
        0,
        7,
        f"Statement for {statement.month} (UTC) - {statement.user_email}",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(3)
    _row(pdf, "Opening balance", f"${usd_text(statement.opening_micros)}", bold=True)
    for line in statement.lines:
        _row(
            pdf,
            f"{line.when.date().isoformat()}  {line.what}",
            f"${signed_usd(line.amount_micros)}",
        )
    for use in statement.sessions:
        label = f"GPU time, {use.tier}" + (f", {use.model}" if use.model else "")
        _row(pdf, label, f"${signed_usd(-use.cost_micros)}")
        _row(pdf, f"    {use.text}", "")
    _row(pdf, "Closing balance", f"${usd_text(statement.closing_micros)}", bold=True)
    if statement.plan_payments:
        pdf.ln(3)
        _row(pdf, "Paid by card, not from the balance", "", bold=True)
        for payment in statement.plan_payments:
            _row(
                pdf,
                f"{payment.when.date().isoformat()}  {payment.what}",
                f"${usd_text(payment.amount_micros)}",
            )
    return bytes(pdf.output())


async def receipt_pdf(tx: AsyncSession, purchase_id: str, *, user_id: str) -> bytes:
    """The receipt of a paid purchase of mine."""
    purchase = await tx.get(Purchase, purchase_id)
    if purchase is None or purchase.user_id != user_id:
        raise NotFound("purchase not found")
    if purchase.status != "paid" or purchase.paid_at is None:
        raise NotFound("a receipt exists once the purchase is paid", code="not_paid")
    user = await tx.get(User, user_id)
    assert user is not None  # noqa: S101 - a purchase always has its user
    pdf = _pdf(f"Sizzle receipt {purchase.id}")
    pdf.cell(0, 7, f"Receipt {purchase.id}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    _row(pdf, "Date (UTC)", purchase.paid_at.strftime("%Y-%m-%d %H:%M"))
    _row(pdf, "Customer", user.email)
    _row(pdf, "Package", f"${usd_text(purchase.paid_micros)} of credit")
    _row(pdf, "Paid by card (Stripe)", f"${usd_text(purchase.paid_micros)}", bold=True)
    bonus = purchase.credit_micros - purchase.paid_micros
    if bonus:
        _row(pdf, "Bonus credit", f"${usd_text(bonus)}")
    _row(pdf, "Credit added", f"${usd_text(purchase.credit_micros)}")
    if purchase.payment_intent_id:
        _row(pdf, "Stripe payment", purchase.payment_intent_id)
    return bytes(pdf.output())
