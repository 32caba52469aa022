"""A rented VM for the VM boot script's tests: a home whose `.ssh` is the real sshd's folder (so
the authorized_keys the script writes is the one sshd reads), a bin folder with the stub
`ollama` and `nvidia-smi`, a state dir, and the clean-up of what the script leaves running."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.providers.fakes.server import free_port
from tests.sshd import Sshd
from tests.workload.test_boot_script import fake_bin

BOOT_SECONDS = float(__import__("os").environ.get("VM_BOOT_SECONDS", "60"))


@dataclass
class Vm:
    """The VM's folders and the environment its login sessions get."""

    root: Path
    home: Path
    state_dir: Path
    bin_dir: Path
    ollama_port: int

    @property
    def environment(self) -> dict[str, str]:
        """What a login on the VM has in its environment (sshd's SetEnv in the SSH tests)."""
        return {
            "PATH": f"{self.bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "STUB_OLLAMA_RECORD": str(self.root / "ollama-serve.json"),
            "STUB_OLLAMA_MUTE": str(self.root / "mute"),
        }

    @property
    def authorized_keys(self) -> Path:
        return self.home / ".ssh" / "authorized_keys"

    def status(self) -> str:
        try:
            return (self.state_dir / "status").read_text().strip()
        except FileNotFoundError:
            return ""

    def wait_for_status(self, prefix: str) -> str:
        """Waits (real time: a real process boots) for the status to start with `prefix`, and
        for boot.log to say so (the script writes the status first, then the log line)."""
        deadline = time.monotonic() + BOOT_SECONDS
        while not (status := self.status()).startswith(prefix) or (
            f"status: {status}" not in self.boot_log()
        ):
            assert time.monotonic() < deadline, f"stuck at {self.status()!r}"
            time.sleep(0.05)
        return status

    def served(self) -> dict[str, object]:
        """What the stub `ollama serve` recorded at its start (its pid, its OLLAMA_HOST)."""
        return dict(json.loads((self.root / "ollama-serve.json").read_text()))

    def boot_log(self) -> str:
        return (self.state_dir / "boot.log").read_text()

    def stop(self) -> None:
        """Stops what the script left running: its background boot, then the model server."""
        for pid in (self._pid(self.state_dir / "boot.lock" / "pid"), self._served_pid()):
            if pid is not None:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while (pid := self._served_pid()) is not None and alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)

    @staticmethod
    def _pid(path: Path) -> int | None:
        try:
            return int(path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _served_pid(self) -> int | None:
        try:
            return int(str(self.served()["pid"]))
        except (FileNotFoundError, ValueError, KeyError):
            return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def vm(root: Path, *, gpus: int = 1) -> Iterator[tuple[Vm, Sshd]]:
    """A VM with its sshd started (its authorized_keys in the home's `.ssh`); stopped after."""
    home = root / "home"
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True)
    ssh_dir.chmod(0o700)
    machine = Vm(
        root=root,
        home=home,
        state_dir=root / "state",
        bin_dir=fake_bin(root, gpus=gpus),
        ollama_port=free_port(),
    )
    sshd = Sshd(ssh_dir)
    sshd.environment = machine.environment
    sshd.start()
    try:
        yield machine, sshd
    finally:
        machine.stop()
        sshd.stop()
