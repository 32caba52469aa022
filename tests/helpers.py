"""Keyword-only helpers shared by tests."""

from __future__ import annotations

import itertools

import httpx

_emails = itertools.count(1)
PASSWORD = "correct horse battery"


async def sign_up(client: httpx.AsyncClient, *, email: str | None = None) -> dict[str, str]:
    """Register a fresh user; the Authorization header for them."""
    email = email or f"user{next(_emails)}@example.com"
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
