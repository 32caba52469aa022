"""The one interface every provider plugin implements; the orchestrator knows nothing else."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import asyncssh

from sizzle.clock import Clock
from sizzle.db.database import Database
from sizzle.domain.tiers import Tier
from sizzle.settings import Settings
from sizzle.workload.endpoint import SshEndpoint

INSTANCE_PREFIX = "sizzle-"


def instance_name(session_id: str) -> str:
    """What every instance Sizzle creates is named: `sizzle-<session id>`."""
    return f"{INSTANCE_PREFIX}{session_id}"


class InstanceState(StrEnum):
    PROVISIONING = "provisioning"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class Offer:
    """One rentable GPU configuration at a provider, at its upstream price."""

    provider: str
    offer_id: str
    gpu_type: str
    gpu_count: int
    vram_gb_per_gpu: int
    upstream_micros_per_hour: int
    reliability: float = 1.0


@dataclass(frozen=True)
class Boot:
    """What a cloud instance is given to boot Sizzle's workload (`sizzle.workload.boot`): the
    session's SSH public key (Sizzle's only way in), the user's own keys (added next to ours),
    and the model to pull."""

    ssh_public_key: str
    user_ssh_keys: tuple[str, ...] = ()
    model: str | None = None


@dataclass(frozen=True)
class Instance:
    external_id: str
    name: str
    state: InstanceState
    message: str | None = None


@dataclass(frozen=True)
class ProviderHealth:
    healthy: bool
    detail: str | None = None


@dataclass
class ProviderContext:
    """What a plugin may use: settings, the clock, and (for the demo plugin) the database."""

    settings: Settings
    clock: Clock
    db: Database
    extra: dict[str, object] = field(default_factory=dict)


# on_progress(session_id, phase, percent): percent 0-100, or None where a phase has none.
ProgressHook = Callable[[str, str, float | None], Awaitable[None] | None]


def _no_progress(_session_id: str, _phase: str, _percent: float | None) -> None:
    return None


class Provider(ABC):
    """A plugin that rents GPUs.

    Contract: `offers` answers quickly (the orchestrator bounds it with a timeout);
    `provision` creates an instance named `instance_name(session_id)` and returns its
    provider-side id, or raises NoCapacity; `status` returns None once the instance is gone;
    `terminate` is silent if the instance is already gone.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    # Why a session with a model must not be placed here (nothing on the instance would serve
    # it), or None where the plugin serves the session's model (or, the demo, plays it).
    cannot_serve_models: ClassVar[str | None] = None

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        # Set by the app: where a plugin reports a launch's progress (e.g. a model download).
        self.on_progress: ProgressHook = _no_progress

    @abstractmethod
    async def health(self) -> ProviderHealth: ...

    @abstractmethod
    async def offers(self, tier: Tier) -> list[Offer]: ...

    @abstractmethod
    async def provision(
        self, offer: Offer, *, session_id: str, model: str | None, boot: Boot | None = None
    ) -> str:
        """`boot`: for a cloud instance, how it is reached and set up (None where the plugin
        needs nothing: the demo, an operator's own Ollama node)."""

    @abstractmethod
    async def status(self, external_id: str) -> Instance | None: ...

    @abstractmethod
    async def terminate(self, external_id: str) -> None: ...

    async def close(self) -> None:
        """Release connections; called once when the process shuts down."""
        return None

    @abstractmethod
    async def list_instances(self) -> list[Instance]:
        """Every instance of ours (named with the `sizzle-` prefix) the provider holds."""


class SupportsPause(ABC):
    """Optional ability: stop the GPU without losing the instance, and start it again."""

    @abstractmethod
    async def stop(self, external_id: str) -> None: ...

    @abstractmethod
    async def start(self, external_id: str) -> None: ...


class SupportsMetrics(ABC):
    """Optional ability: what the GPU reports now. Readings come from the hardware or the
    provider; a reading that is not available is None, never an estimate."""

    @abstractmethod
    async def metrics(self, external_id: str) -> dict[str, Any] | None: ...


class SupportsChat(ABC):
    """Optional ability: the instance serves its model through Ollama, and this says where.

    `chat_base_url` is the base URL of the instance's Ollama (its OpenAI-compatible API is
    under `/v1/`), or None while the provider has not published an address for it yet.
    """

    @abstractmethod
    async def chat_base_url(self, external_id: str) -> str | None: ...

    def chat_headers(self, external_id: str) -> dict[str, str]:
        """Headers every chat request to the instance carries (a node's token); none here."""
        return {}


class SupportsSsh(ABC):
    """Optional ability: the instance is reached over SSH, and this says where.

    Its model server listens on the instance's loopback only; Sizzle reaches it through an SSH
    tunnel (`sizzle.workload.tunnel`) authenticated with the session's key. `ssh_endpoint` is
    the instance's SSH address and login user once it answers there, or None before that (and
    once the instance is gone).
    """

    @abstractmethod
    async def ssh_endpoint(self, external_id: str) -> SshEndpoint | None: ...


class SupportsSshBoot(SupportsSsh):
    """Optional ability: the instance is a bare VM that Sizzle boots over SSH.

    The provider put its own key on the VM at launch (`boot_key`, registered with the provider
    once); the session's key is not there yet. Once the VM answers at `ssh_endpoint`, readiness
    logs in with `boot_key` and runs `boot_script` (`sizzle.workload.boot`) once, which
    authorizes the session's key and boots the workload in the background; from then on the
    instance is reached with the session's key, as any SupportsSsh instance.
    """

    boot_script: ClassVar[str]

    @abstractmethod
    def boot_key(self) -> asyncssh.SSHKey:
        """The private key of the provider's key pair that every launch names."""
