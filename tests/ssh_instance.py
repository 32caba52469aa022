"""A provider whose instances are reached over SSH, scripted by the test, with the fake Ollama on
127.0.0.1 standing for the instance's model server: shared by the chat and readiness tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.domain.tiers import Tier
from sizzle.providers.base import (
    Instance,
    InstanceState,
    Offer,
    Provider,
    ProviderHealth,
    SupportsSsh,
)
from sizzle.services.readiness import MACHINE_STARTING, BootCheck, BootSource, ReadinessProbe
from sizzle.workload.endpoint import SshEndpoint
from sizzle.workload.keys import session_key
from tests.conftest import TEST_SECRET
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.server import serve
from tests.sshd import Sshd


class ScriptedSsh(Provider, SupportsSsh):
    """Instances named `i-<n>` reached over SSH at whatever endpoint the test gives (None: not
    yet); running once provisioned, gone once terminated. Offers one GPU per price given."""

    name = "scripted"
    label = "Scripted SSH"

    def __init__(self, *args: Any, prices: tuple[int, ...] = ()) -> None:
        super().__init__(*args)
        self.endpoint: SshEndpoint | None = None
        self.prices = prices
        self.provisioned: list[str] = []
        self.terminated: list[str] = []

    async def ssh_endpoint(self, external_id: str) -> SshEndpoint | None:
        return self.endpoint if external_id in self.provisioned else None

    async def health(self) -> ProviderHealth:
        return ProviderHealth(healthy=True)

    async def offers(self, tier: Tier) -> list[Offer]:
        return [
            Offer(self.name, f"{self.name}-{i}", "RTX 4090", 1, 24, price)
            for i, price in enumerate(self.prices)
        ]

    async def provision(self, offer: Offer, *, session_id: str, **_: Any) -> str:
        self.provisioned.append(f"i-{len(self.provisioned) + 1}")
        return self.provisioned[-1]

    async def status(self, external_id: str) -> Instance | None:
        if external_id not in self.provisioned or external_id in self.terminated:
            return None
        return Instance(external_id, f"sizzle-{external_id}", InstanceState.RUNNING)

    async def terminate(self, external_id: str) -> None:
        self.terminated.append(external_id)

    async def list_instances(self) -> list[Instance]:
        return []


@contextmanager
def instance_ollama(fake: FakeOllama) -> Iterator[int]:
    """The instance's model server on 127.0.0.1 (reached only through the tunnel); its port."""
    with serve(fake_ollama_app(fake)) as url:
        yield int(url.rsplit(":", 1)[1])


async def authorize(sshd: Sshd, db: Database, clock: FakeClock, session_id: str) -> None:
    """The instance takes the session's key, as its boot script would have set it up."""
    async with db.transaction() as tx:
        pair = await session_key(tx, session_id, secret=TEST_SECRET, now=clock.now())
    sshd.authorize(pair.public_key)


class ReadyOnceReachable(ReadinessProbe):
    """A readiness probe for tests about something else (the provider plugins' contracts): an
    instance with an SSH address counts as serving. The real probe, through a real sshd, is
    tested in tests/jobs/test_readiness.py."""

    async def check(
        self,
        provider: SupportsSsh,
        *,
        session_id: str,
        instance_id: str,
        model: str | None,
        boot: BootSource | None = None,
    ) -> BootCheck:
        if await provider.ssh_endpoint(instance_id) is None:
            return BootCheck(phase=MACHINE_STARTING)
        return BootCheck(ready=True)
