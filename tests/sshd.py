"""A real OpenSSH server on loopback, standing for a rented instance: its own folder, host key,
config and authorized keys; started, stopped, restarted (with a new host key if asked), and its
connections dropped, by the test.

Without `/usr/sbin/sshd` the tests that use it are skipped, unless SIZZLE_REQUIRE_SSHD is set
(CI installs Debian's openssh-server): then they fail.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sizzle.workload.tunnel import SshEndpoint
from tests.providers.fakes.server import free_port

SSHD = os.environ.get("SIZZLE_SSHD", "/usr/sbin/sshd")
START_SECONDS = 10

needs_sshd = pytest.mark.skipif(
    not shutil.which(SSHD) and not os.environ.get("SIZZLE_REQUIRE_SSHD"),
    reason=f"needs OpenSSH's sshd at {SSHD} (apt-get install openssh-server)",
)


class Sshd:
    """One sshd on 127.0.0.1, in `root`; connections log in as the user running the tests."""

    def __init__(self, root: Path) -> None:
        assert shutil.which(SSHD), f"no sshd at {SSHD}: apt-get install openssh-server"
        self.root = root
        self.port = free_port()
        self.username = getpass.getuser()
        self.authorized_keys = root / "authorized_keys"
        self.authorized_keys.write_text("")
        self.log = root / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None
        # environment of the commands it runs (`SetEnv`), from its next start
        self.environment: dict[str, str] = {}
        self._host_keys = 0
        self.config = root / "sshd_config"
        self.new_host_key()

    @property
    def endpoint(self) -> SshEndpoint:
        return SshEndpoint(host="127.0.0.1", port=self.port, username=self.username)

    @property
    def host_key_file(self) -> Path:
        return self.root / f"host_key_{self._host_keys}"

    def host_public_key(self) -> str:
        """The current host key's public half, `<algorithm> <base64>`."""
        algorithm, blob, *_ = self.host_key_file.with_suffix(".pub").read_text().split()
        return f"{algorithm} {blob}"

    def authorize(self, public_key: str) -> None:
        with self.authorized_keys.open("a") as keys:
            keys.write(public_key.strip() + "\n")

    def new_host_key(self) -> None:
        """A fresh host key, used from the next start."""
        self._host_keys += 1
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key_file)],
            check=True,
            capture_output=True,
        )
        self.host_key_file.chmod(0o600)

    def _write_config(self, *, penalties: bool = True) -> None:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key_file}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "AllowTcpForwarding local",
            "X11Forwarding no",
            f"PidFile {self.root / 'sshd.pid'}",
            "UsePAM no",
            "StrictModes no",
            "LogLevel INFO",
        ]
        if self.environment:  # one line: sshd takes the first SetEnv only
            pairs = (f'"{name}={value}"' for name, value in self.environment.items())
            lines.append("SetEnv " + " ".join(pairs))
        if penalties:
            # OpenSSH 9.8+ would shut loopback out after the refused-key test; older ones do
            # not know the option
            lines.append("PerSourcePenalties no")
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation folder
        self._write_config()
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True)
        if b"PerSourcePenalties" in check.stderr:
            self._write_config(penalties=False)
        offset = self.log.stat().st_size if self.log.exists() else 0
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + START_SECONDS
        while b"Server listening on" not in self.log.read_bytes()[offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start:\n{self.log.read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the listener and every connection it serves."""
        if self.process is None:
            return
        self.drop_connections()
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def drop_connections(self) -> None:
        """Kill the per-connection sshd children: the instance's side of each link goes."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for pid in children.read_text().split():
            with contextlib.suppress(ProcessLookupError):  # one that ended since it was listed
                os.kill(int(pid), signal.SIGKILL)

    def accepted_logins(self) -> int:
        """How many connections authenticated since the server was made."""
        return self.log.read_text().count("Accepted publickey")


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A started sshd on loopback; stopped at the end of the test."""
    root = tmp_path / "sshd"
    root.mkdir()
    server = Sshd(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
