"""Links in mails and Stripe's return links point at SIZZLE_PUBLIC_URL (else the loopback
address Sizzle listens on), never at a request's Host; requests for other hosts are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import assert_error, make_user
from tests.smtp_inbox import Inbox

EVIL = {"Host": "evil.example"}
Served = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def served(settings: Settings, clock: FakeClock, db: Database, inbox: tuple[Inbox, int]) -> Served:
    """A client of Sizzle with these settings changed, mailing to the test inbox."""

    @asynccontextmanager
    async def serve(**changes: object) -> AsyncIterator[httpx.AsyncClient]:
        update = {"smtp_url": f"smtp://127.0.0.1:{inbox[1]}", **changes}
        state = AppState.build(settings.model_copy(update=update), clock=clock, db=db)
        transport = httpx.ASGITransport(app=create_app(state=state, run_jobs=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://sizzle.test") as http:
            yield http

    return serve


async def _reset_link(
    client: httpx.AsyncClient, inbox: Inbox, db: Database, clock: FakeClock
) -> str:
    """Ask for a password reset with a forged Host; the link that was mailed."""
    user = await make_user(db, now=clock.now())
    asked = await client.post(
        "/api/v1/auth/password-reset", json={"email": user.email}, headers=EVIL
    )
    assert asked.status_code == 202, asked.text
    body = inbox.to(user.email)[-1].get_payload(decode=True).decode()
    return next(line for line in body.splitlines() if "/reset-password?token=" in line)


async def test_a_forged_host_cannot_steer_the_reset_link(
    served: Served, inbox: tuple[Inbox, int], db: Database, clock: FakeClock
) -> None:
    # the operator switched the host check off: the link still points at the public URL
    async with served(public_url="https://gpu.example.com/", allowed_hosts="*") as client:
        link = await _reset_link(client, inbox[0], db, clock)
    assert link.startswith("https://gpu.example.com/reset-password?token=")


async def test_without_a_public_url_links_point_at_the_loopback_address(
    served: Served, inbox: tuple[Inbox, int], db: Database, clock: FakeClock
) -> None:
    async with served(public_url="", allowed_hosts="*", host="127.0.0.1", port=8123) as client:
        link = await _reset_link(client, inbox[0], db, clock)
    assert link.startswith("http://127.0.0.1:8123/reset-password?token=")


async def test_a_request_for_another_host_is_refused(
    served: Served, inbox: tuple[Inbox, int], db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    async with served(public_url="https://gpu.example.com", allowed_hosts="") as client:
        for host in ("evil.example", "gpu.example.com.evil.example", "sizzle.test"):
            refused = await client.post(
                "/api/v1/auth/password-reset", json={"email": user.email}, headers={"Host": host}
            )
            assert_error(refused, 400, "invalid_host")
        assert inbox[0].to(user.email) == []
        for host in ("gpu.example.com", "GPU.example.com:443", "127.0.0.1:8000", "localhost"):
            page = await client.get("/signin", headers={"Host": host})
            assert page.status_code == 200, host
        # probed by address (Docker health checks, Prometheus by DNS), and building no link
        for path in ("/healthz", "/readyz"):
            assert (await client.get(path, headers=EVIL)).status_code == 200


async def test_allowed_hosts_take_wildcards(served: Served) -> None:
    async with served(allowed_hosts="*.example.com") as client:
        assert (await client.get("/signin", headers={"Host": "a.example.com"})).status_code == 200
        assert_error(await client.get("/signin", headers={"Host": "example.org"}), 400)


def test_the_default_hosts_are_the_public_urls_and_loopback() -> None:
    settings = Settings(public_url="https://gpu.example.com:8443/", allowed_hosts="")
    assert settings.trusted_hosts == ["gpu.example.com", "localhost", "127.0.0.1", "[::1]"]
    assert settings.public_base_url == "https://gpu.example.com:8443"
    assert Settings(allowed_hosts="").trusted_hosts == ["localhost", "127.0.0.1", "[::1]"]
    ipv6 = Settings(public_url="http://[2001:db8::1]", allowed_hosts="")
    assert ipv6.trusted_hosts[0] == "[2001:db8::1]"
    assert Settings(public_url="", host="0.0.0.0", port=9000).public_base_url == (  # noqa: S104
        "http://127.0.0.1:9000"
    )
    assert Settings(public_url="", host="::1", port=9000).public_base_url == "http://[::1]:9000"


@pytest.mark.parametrize("bad", ["gpu.example.com", "ftp://gpu.example.com", "https://", "x?y=1"])
def test_a_public_url_must_be_an_http_address(bad: str) -> None:
    with pytest.raises(ValueError, match="SIZZLE_PUBLIC_URL"):
        Settings(public_url=bad)


@pytest.mark.parametrize("bad", ["gpu.*.com", "*example.com", "**"])
def test_allowed_hosts_refuse_stray_wildcards(bad: str) -> None:
    with pytest.raises(ValueError, match="SIZZLE_ALLOWED_HOSTS"):
        Settings(allowed_hosts=bad)
