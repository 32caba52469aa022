"""A provider reached over SSH, for the tests of users' own SSH keys: its instances are ready
once they have an address (the real readiness probe has its own tests), and it keeps the Boot
each launch was given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncssh

from sizzle.clock import FakeClock
from sizzle.providers.base import Boot, ProviderContext
from sizzle.services.breaker import ProviderStatus
from sizzle.state import AppState
from sizzle.workload.endpoint import SshEndpoint
from tests.ssh_instance import ReadyOnceReachable, ScriptedSsh


def public_line(algorithm: str = "ssh-ed25519", comment: str = "me@laptop", **kw: Any) -> str:
    """A fresh public key in OpenSSH form, as a user would paste it."""
    key = asyncssh.generate_private_key(algorithm, comment=comment, **kw)
    return key.export_public_key("openssh").decode().strip()


ENDPOINT = SshEndpoint(host="203.0.113.7", port=40022, username="root")


class RecordingSsh(ScriptedSsh):
    """The scripted SSH provider, keeping the Boot each launch was given."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.boots: list[Boot | None] = []
        self.endpoint_asks = 0

    async def provision(self, offer, *, session_id, boot=None, **rest):  # type: ignore[no-untyped-def]
        self.boots.append(boot)
        return await super().provision(offer, session_id=session_id, **rest)

    async def ssh_endpoint(self, external_id: str) -> SshEndpoint | None:
        self.endpoint_asks += 1
        return await super().ssh_endpoint(external_id)


@dataclass
class Cloud:
    provider: RecordingSsh
    state: AppState
    clock: FakeClock


def make_cloud(state: AppState, clock: FakeClock) -> Cloud:
    """The app's providers with the recording SSH provider first (by name, at the demo's
    price), which answers at ENDPOINT."""
    context = ProviderContext(settings=state.settings, clock=clock, db=state.db)
    provider = RecordingSsh(context, prices=(0,))
    provider.name = "a-ssh"  # type: ignore[misc]  # first by name at the demo's price
    for registry in (state.providers, state.orchestrator.providers):
        registry[provider.name] = provider
    state.orchestrator.status[provider.name] = ProviderStatus(provider.name)
    state.jobs.readiness = ReadyOnceReachable(
        state.db, state.tunnels, secret=state.settings.resolved_secret_key, clock=clock
    )
    provider.endpoint = ENDPOINT
    return Cloud(provider, state, clock)
