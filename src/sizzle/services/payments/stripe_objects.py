"""Reading Stripe's subscriptions and invoices in both API shapes Sizzle meets: 2025-03-31
and later (period on the subscription item, invoice's subscription under `parent`), and the
older one (period on the subscription, top-level `subscription`), which localstripe speaks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def as_dict(obj: Any) -> dict[str, Any]:
    """A Stripe object as the dict an event carries (nested objects stay mappings)."""
    return dict(obj)


def at(epoch: Any) -> datetime | None:
    return datetime.fromtimestamp(int(epoch), UTC) if isinstance(epoch, int) else None


def subscription_period(subscription: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The current period: on the subscription's item (API 2025-03-31 on), or, in older API
    versions, on the subscription itself."""
    items = ((subscription.get("items") or {}).get("data")) or []
    for source in [*items, subscription]:
        start, end = at(source.get("current_period_start")), at(source.get("current_period_end"))
        if start is not None and end is not None:
            return start, end
    return None, None


def invoice_subscription(invoice: dict[str, Any]) -> str | None:
    """The subscription an invoice bills: `parent.subscription_details` (API 2025-03-31 on)
    or the older top-level `subscription`."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    found = details.get("subscription") or invoice.get("subscription")
    return found if isinstance(found, str) else None


def invoice_period(invoice: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The month an invoice pays for: the latest service period among its lines (a proration
    line, if any, covers part of an earlier one)."""
    periods = []
    for line in ((invoice.get("lines") or {}).get("data")) or []:
        period = line.get("period") or {}
        start, end = at(period.get("start")), at(period.get("end"))
        if start is not None and end is not None:
            periods.append((end, start))
    if not periods:
        return None, None
    end, start = max(periods)
    return start, end
