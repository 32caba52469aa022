"""Stripe sends the browser back to SIZZLE_PUBLIC_URL (else the loopback address Sizzle
listens on), whatever Host the request that opened the checkout carried."""

from __future__ import annotations

import pytest

from tests.helpers import sign_up
from tests.payments.shop import BILLING, Shop

FORGED = {"Host": "evil.example"}


@pytest.fixture
def shop_settings() -> dict[str, object]:
    # no public URL, and the host check switched off, so only the link building stands
    return {"public_url": "", "allowed_hosts": "*", "host": "127.0.0.1", "port": 8123}


async def test_checkout_return_links_ignore_a_forged_host(shop: Shop) -> None:
    auth = await sign_up(shop.client)
    opened = await shop.client.post(
        f"{BILLING}/checkout", json={"package": "5"}, headers={**auth, **FORGED}
    )
    assert opened.status_code == 201, opened.text
    (_, form, _headers) = shop.stripe.requests[-1]
    assert form["success_url"].startswith("http://127.0.0.1:8123/billing/return?purchase=")
    assert form["cancel_url"] == "http://127.0.0.1:8123/billing"
