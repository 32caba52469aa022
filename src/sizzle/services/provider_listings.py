"""Whether the reconciler can see each provider: its streak of failed listings, kept per provider.

A provider whose instances cannot be listed is skipped for the round (silence is not evidence),
which leaves the reconciler blind there: orphans are not destroyed, lost instances not noticed.
Each round records the outcome here, so the blindness shows in metrics, alerts and on the
operator overview instead of only in a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import ProviderListing

# From this many failed rounds in a row, the overview calls a provider blind (the alert's N).
BLIND_AFTER_ROUNDS = 3
MAX_ERROR_CHARS = 500


async def record_round(
    tx: AsyncSession, outcomes: Mapping[str, str | None], *, now: datetime
) -> list[ProviderListing]:
    """Record one round: per provider, None if its listing worked, else why it failed."""
    known = {
        row.provider: row
        for row in await tx.scalars(
            select(ProviderListing).where(ProviderListing.provider.in_(list(outcomes)))
        )
    }
    rows = []
    for provider, error in outcomes.items():
        row = known.get(provider)
        if row is None:
            row = ProviderListing(provider=provider, failed_rounds=0)
            tx.add(row)
        row.checked_at = now
        if error is None:
            row.failed_rounds = 0
            row.failing_since = None
            row.last_listed_at = now
        else:
            if row.failed_rounds == 0:
                row.failing_since = now
            row.failed_rounds += 1
            row.last_error = error[:MAX_ERROR_CHARS]
        rows.append(row)
    await tx.flush()
    return rows


async def blind_providers(tx: AsyncSession, providers: list[str]) -> list[ProviderListing]:
    """The providers (of those switched on) the reconciler has failed to list for
    BLIND_AFTER_ROUNDS rounds or more, longest blind first."""
    rows = await tx.scalars(
        select(ProviderListing)
        .where(
            ProviderListing.provider.in_(providers),
            ProviderListing.failed_rounds >= BLIND_AFTER_ROUNDS,
        )
        .order_by(ProviderListing.failing_since, ProviderListing.provider)
    )
    return list(rows)


async def listings_of(tx: AsyncSession, providers: list[str]) -> dict[str, ProviderListing]:
    """The last recorded listing of each of these providers (none before the first round)."""
    rows = await tx.scalars(select(ProviderListing).where(ProviderListing.provider.in_(providers)))
    return {row.provider: row for row in rows}
