"""localstripe (installed from PyPI with the dev dependencies) as a real process on loopback,
for the Stripe calls it serves: customers, payment methods, PaymentIntents (off-session and
confirmed at once included) and refunds. It has no Checkout Sessions: those stay with
`fake_stripe`.

One process per test session (`localstripe_url`), emptied before each test (`flush`). It is
started with the interpreter running the tests, so it is the venv's localstripe wherever
pytest runs from (`scripts/test`, `.ci/run`, or `.venv/bin/python -m pytest`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import httpx

from sizzle.state import AppState
from tests.providers.fakes.server import free_port

SECRET_KEY = "sk_test_sizzle_localstripe"  # localstripe takes any `sk_...` key
START_SECONDS = 20.0


@dataclass
class LocalShop:
    """Sizzle wired to localstripe: its address, Sizzle's state and an API client."""

    url: str
    state: AppState
    client: httpx.AsyncClient


@contextmanager
def running_localstripe() -> Iterator[str]:
    """Start `python -m localstripe` on a free loopback port; its base URL until the block
    ends, then the process is stopped."""
    if importlib.util.find_spec("localstripe") is None:
        raise RuntimeError(
            f"localstripe is not installed for {sys.executable}: "
            "pip install -e '.[dev]' (scripts/test does)"
        )
    with tempfile.TemporaryFile() as log:
        process, url = _start(log)
        try:
            yield url
        finally:
            _stop(process)


def _start(log: IO[bytes]) -> tuple[subprocess.Popen[bytes], str]:
    for _ in range(3):  # the free port may be taken between choosing it and localstripe binding it
        port = free_port()
        # --from-scratch: never load the objects an earlier localstripe left in /tmp
        process = subprocess.Popen(
            [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            up = _wait_until_up(process, url)
        except BaseException:
            _stop(process)
            raise
        if up:
            return process, url
        exited = process.poll() is not None
        _stop(process)
        if not exited:  # alive but silent: trying another port will not help
            break
    raise RuntimeError(f"localstripe did not start (last tried {url}):\n{_tail(log)}")


def _wait_until_up(process: subprocess.Popen[bytes], url: str) -> bool:
    """True once localstripe answers; False if the process ended or took too long."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            # its Stripe.js stand-in: no key needed, no side effects
            if httpx.get(f"{url}/js.stripe.com/v3/", timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]


def flush(url: str) -> None:
    """Forget every object localstripe holds (`DELETE /_config/data`)."""
    httpx.delete(f"{url}/_config/data", timeout=5.0).raise_for_status()


def form(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Stripe's form encoding: nested keys in brackets, booleans as `true`/`false`."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else key
        if isinstance(value, dict):
            out.update(form(value, name))
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    return out


class LocalStripe:
    """The test's own view of localstripe, over plain HTTP (not Sizzle's Stripe client)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {SECRET_KEY}"}, timeout=10.0
        )

    async def post(self, path: str, **params: Any) -> dict[str, Any]:
        async with self._client() as client:
            response = await client.post(path, data=form(params))
        assert response.status_code == 200, f"POST {path}: {response.status_code} {response.text}"
        return dict(response.json())

    async def get(self, path: str) -> dict[str, Any]:
        async with self._client() as client:
            response = await client.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return dict(response.json())

    async def card(self, number: str, *, email: str) -> tuple[str, str]:
        """A customer with a card payment method attached; (customer id, payment method id)."""
        customer = str((await self.post("/v1/customers", email=email))["id"])
        return customer, await self.attach_card(number, customer=customer)

    async def attach_card(self, number: str, *, customer: str) -> str:
        """A card payment method attached to `customer`; its id."""
        method = await self.post(
            "/v1/payment_methods",
            type="card",
            card={"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        )
        await self.post(f"/v1/payment_methods/{method['id']}/attach", customer=customer)
        return str(method["id"])

    async def payment_intents(self) -> list[dict[str, Any]]:
        return list((await self.get("/v1/payment_intents?limit=100"))["data"])
