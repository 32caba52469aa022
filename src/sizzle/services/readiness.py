"""Is the model on an SSH-reached instance really serving? Read through the private path only.

A cloud says "running" once the machine is up; Sizzle's boot script (`workload/boot/instance.sh`)
then starts sshd, checks the GPU, starts the model server on loopback and pulls the model,
writing each phase to its status file. A session is ready when, through the session's SSH
tunnel, the model server lists the session's model and the model answers a one-token request.
Until then each check says which phase the boot is in, for the live page; a "failed: ..." status
is a failed instance. Every check is bounded by a timeout: one slow instance never stalls the
round that checks the others.

A bare VM (SupportsSshBoot: Lambda) has no boot script running when it comes up, and only the
provider's key on it: while the session's key is refused there, or no status has been written,
the check logs in with the provider's key and starts the VM boot script (`vm.sh`), which
authorizes the session's key and writes the same phases to the same status file. The checks
after that read it as for any other instance.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import structlog

from sizzle.clock import Clock
from sizzle.db.database import Database
from sizzle.errors import (
    BadGateway,
    GatewayTimeout,
    HostKeyChanged,
    InstanceKeyRefused,
    InstanceUnreachable,
)
from sizzle.providers.base import Boot, SupportsSsh, SupportsSshBoot
from sizzle.services.instance_path import (
    model_server_url,
    session_key_pair,
    session_private_key,
)
from sizzle.services.workspace import model_names
from sizzle.workload.boot import boot_command
from sizzle.workload.endpoint import SshEndpoint
from sizzle.workload.tunnel import OLLAMA_PORT, Tunnels

log = structlog.get_logger(__name__)

STATE_DIR = "/var/lib/sizzle"  # the boot script's SIZZLE_STATE_DIR default
CHECK_TIMEOUT_SECONDS = 30.0
_PULL_LOG_TAIL_BYTES = 4096
_SEPARATOR = "--sizzle-pull-log--"

MACHINE_STARTING = "machine starting"
CHECKING_GPU = "checking the GPU"
SERVER_STARTING = "model server starting"
DOWNLOADING = "downloading the model"
LOADING = "loading into GPU memory"

# The boot script's phases, as the live page names them.
_PHASES = {
    "installing-ssh": MACHINE_STARTING,
    "starting-ssh": MACHINE_STARTING,
    "checking-gpu": CHECKING_GPU,
    "installing-model-server": SERVER_STARTING,  # vm.sh, where Ollama is not installed
    "starting-model-server": SERVER_STARTING,
    "pulling-model": DOWNLOADING,
}
# What the session boots with (its key, the user's keys, the model): asked for only when a VM
# is booted over SSH.
BootSource = Callable[[], Awaitable[Boot]]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PERCENT = re.compile(r"(\d{1,3})(?:\.\d+)?\s*%")


@dataclass(frozen=True)
class BootCheck:
    """What one check found: ready; failed (why); or still booting (its phase, if known)."""

    ready: bool = False
    failure: str | None = None
    phase: str | None = None
    percent: int | None = None


@dataclass
class _Reached:
    """How far a check got before its timeout: the phase to show if it runs out."""

    phase: str | None = None


def pull_percent(pull_log_tail: str) -> int | None:
    """The download's percent from the last line of `ollama pull`'s output: an NDJSON progress
    line with completed/total, or the CLI's "NN%" bar; None when the line has neither."""
    lines = [
        _ANSI.sub("", line).strip() for line in re.split(r"[\r\n]", pull_log_tail) if line.strip()
    ]
    if not lines:
        return None
    last = lines[-1]
    try:
        progress = json.loads(last)
    except ValueError:
        found = _PERCENT.findall(last)
        return min(100, int(found[-1])) if found else None
    if not isinstance(progress, dict):
        return None
    total, completed = progress.get("total"), progress.get("completed")
    if isinstance(total, int) and total > 0 and isinstance(completed, int):
        return max(0, min(100, completed * 100 // total))
    return None


class ReadinessProbe:
    """Checks provisioning sessions on SSH-reached instances through the process's tunnels."""

    def __init__(
        self,
        db: Database,
        tunnels: Tunnels,
        *,
        secret: str,
        clock: Clock,
        model_port: int = OLLAMA_PORT,
        state_dir: str = STATE_DIR,
        timeout: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self.db = db
        self.tunnels = tunnels
        self._secret = secret
        self._clock = clock
        self.model_port = model_port  # where the model server listens on the instance's loopback
        self.state_dir = state_dir
        self.timeout = timeout

    async def check(
        self,
        provider: SupportsSsh,
        *,
        session_id: str,
        instance_id: str,
        model: str | None,
        boot: BootSource | None = None,
    ) -> BootCheck:
        """Where the session's boot stands; never raises for an instance that does not answer
        (that is still booting, until the provision timeout says otherwise).

        `boot`: what a VM booted over SSH is given (the session's key and the user's keys);
        without it, the session's key alone."""
        reached = _Reached()
        try:
            async with asyncio.timeout(self.timeout):
                return await self._check(provider, session_id, instance_id, model, boot, reached)
        except HostKeyChanged as exc:
            return BootCheck(failure=exc.message)
        except TimeoutError:
            # A large model may take longer than one check to load: the next check asks again.
            log.info("readiness.check_timed_out", session_id=session_id, seconds=self.timeout)
            return BootCheck(phase=reached.phase)

    async def _check(
        self,
        provider: SupportsSsh,
        session_id: str,
        instance_id: str,
        model: str | None,
        boot: BootSource | None,
        reached: _Reached,
    ) -> BootCheck:
        endpoint = await provider.ssh_endpoint(instance_id)
        if endpoint is None:
            return BootCheck(phase=MACHINE_STARTING)
        try:
            key = await session_private_key(
                self.db, session_id, secret=self._secret, clock=self._clock
            )
            report = await self.tunnels.run(session_id, endpoint, key, self._boot_report_command())
        except HostKeyChanged:
            raise
        except InstanceKeyRefused as exc:
            if not isinstance(provider, SupportsSshBoot):
                log.info("readiness.ssh_not_up", session_id=session_id, error=exc.message)
                return BootCheck(phase=MACHINE_STARTING)
            report = ""  # a bare VM: only the provider's key is on it yet
        except (InstanceUnreachable, BadGateway) as exc:
            log.info("readiness.ssh_not_up", session_id=session_id, error=exc.message)
            return BootCheck(phase=MACHINE_STARTING)
        status, _, pull_log = report.partition(_SEPARATOR)
        phase = status.strip().splitlines()[0].strip() if status.strip() else ""
        if not phase and isinstance(provider, SupportsSshBoot):
            return await self._boot_vm(provider, session_id, endpoint, model, boot)
        if phase.startswith("failed"):
            return BootCheck(failure=f"the instance's boot {phase}")
        if phase == "pulling-model":
            return BootCheck(phase=DOWNLOADING, percent=pull_percent(pull_log))
        if phase in _PHASES:
            return BootCheck(phase=_PHASES[phase])
        if phase != "ready":  # no status yet: the boot script has not begun
            return BootCheck(phase=MACHINE_STARTING)
        url = await model_server_url(
            self.db,
            self.tunnels,
            session_id,
            endpoint,
            port=self.model_port,
            secret=self._secret,
            clock=self._clock,
        )
        return await self._model_answers(url, model, reached)

    async def _boot_vm(
        self,
        provider: SupportsSshBoot,
        session_id: str,
        endpoint: SshEndpoint,
        model: str | None,
        boot: BootSource | None,
    ) -> BootCheck:
        """Log in with the provider's key and start the VM's boot script: it returns once the
        session's key is authorized, and boots on detached from this connection."""
        if boot is None:
            pair = await session_key_pair(
                self.db, session_id, secret=self._secret, clock=self._clock
            )
            given = Boot(ssh_public_key=pair.public_key, model=model)
        else:
            given = await boot()
        command = boot_command(
            provider.boot_script,
            {
                "SIZZLE_SSH_PUBLIC_KEY": given.ssh_public_key,
                "SIZZLE_USER_SSH_KEYS": "\n".join(given.user_ssh_keys),
                "SIZZLE_MODEL": given.model or model or "",
                "SIZZLE_STATE_DIR": self.state_dir,
                "OLLAMA_PORT": str(self.model_port),
            },
        )
        try:
            await self.tunnels.run_once(session_id, endpoint, provider.boot_key(), command)
        except HostKeyChanged:
            raise
        except (InstanceUnreachable, GatewayTimeout) as exc:
            # sshd up before the provider's key is in place, or a slow login: try again
            log.info("readiness.vm_boot_not_started", session_id=session_id, error=exc.message)
            return BootCheck(phase=MACHINE_STARTING)
        except BadGateway as exc:
            return BootCheck(failure=f"the instance's boot script did not start: {exc.message}")
        log.info("readiness.vm_boot_started", session_id=session_id)
        return BootCheck(phase=MACHINE_STARTING)

    def _boot_report_command(self) -> str:
        """One round trip: the status file, a separator, the tail of the pull's log."""
        status = shlex.quote(f"{self.state_dir}/status")
        pull_log = shlex.quote(f"{self.state_dir}/pull.log")
        return (
            f"cat {status} 2>/dev/null; echo; echo {_SEPARATOR}; "
            f"tail -c {_PULL_LOG_TAIL_BYTES} {pull_log} 2>/dev/null; true"
        )

    async def _model_answers(self, url: str, model: str | None, reached: _Reached) -> BootCheck:
        """The model server lists the model (any server answer will do without one), and the
        model answers one token."""
        async with httpx.AsyncClient(base_url=url, timeout=self.timeout) as http:
            try:
                tags = await http.get("/api/tags")
                tags.raise_for_status()
                listed = {str(m.get("name")) for m in tags.json().get("models", [])}
            except (httpx.HTTPError, ValueError, AttributeError):
                return BootCheck(phase=SERVER_STARTING)
            if model is None:
                return BootCheck(ready=True)
            if not listed & model_names(model):
                return BootCheck(phase=DOWNLOADING)
            reached.phase = LOADING
            try:
                answer = await http.post(
                    "/api/generate",
                    json={
                        "model": model,
                        "prompt": "hi",
                        "stream": False,
                        "options": {"num_predict": 1},
                    },
                )
                answered = answer.status_code == 200 and answer.json().get("done") is True
            except (httpx.HTTPError, ValueError, AttributeError):
                answered = False
        return BootCheck(ready=True) if answered else BootCheck(phase=LOADING)
