"""The shop the payments tests use: Sizzle wired to a fake Stripe on loopback, and helpers
to buy a package and deliver Stripe's signed events."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy import func, select

from sizzle.db.database import Database
from sizzle.db.models import LedgerEntry
from sizzle.state import AppState
from tests.payments.fake_stripe import FakeStripe, event, signed

BILLING = "/api/v1/billing"


@dataclass
class Shop:
    stripe: FakeStripe
    state: AppState
    client: httpx.AsyncClient


async def balance(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    response = await client.get(f"{BILLING}/balance", headers=auth)
    assert response.status_code == 200
    return str(response.json()["balance_usd"])


async def buy(shop: Shop, auth: dict[str, str], package: str = "20") -> dict[str, object]:
    """Start a checkout; the Stripe session the fake holds for it."""
    response = await shop.client.post(
        f"{BILLING}/checkout", json={"package": package}, headers=auth
    )
    assert response.status_code == 201, response.text
    body = response.json()
    (session,) = [
        s for s in shop.stripe.sessions.values() if s["client_reference_id"] == body["purchase_id"]
    ]
    assert body["url"] == session["url"]
    return session


async def deliver(
    shop: Shop, kind: str, session: dict[str, object], **sign: object
) -> httpx.Response:
    body, header = signed(event(kind, dict(session)), **sign)  # type: ignore[arg-type]
    return await shop.client.post(
        f"{BILLING}/webhook", content=body, headers={"Stripe-Signature": header}
    )


async def purchase_entries(db: Database) -> int:
    async with db.read() as tx:
        return (
            await tx.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.kind.in_(("purchase", "purchase_bonus")))
            )
        ) or 0
