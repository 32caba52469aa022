"""The instance boot script, run for real the way Vast runs it (argv `/bin/sh -c <script>`, no
shell around it) with the real OpenSSH server, a stub `ollama` and a stub `nvidia-smi`: it ends
`ready` with the model pulled, our key and the user's key log in, any other key and passwords
do not, the model server listens on loopback only and answers through an SSH tunnel, and bad
inputs are refused at once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import httpx
import pytest

from sizzle.workload.boot import boot_script
from tests.providers.fakes.server import free_port

BOOT_DIR = Path(__file__).resolve().parents[2] / "src" / "sizzle" / "workload" / "boot"
STUB_OLLAMA = Path(__file__).with_name("stub_ollama.py")
SSHD = "/usr/sbin/sshd"
MODEL = "llama3.2"
BOOT_SECONDS = 60.0

needs_shellcheck = pytest.mark.skipif(
    not shutil.which("shellcheck") and not os.environ.get("SIZZLE_REQUIRE_SHELLCHECK"),
    reason="needs shellcheck (apt-get install shellcheck; .ci/run installs it)",
)


@pytest.mark.parametrize("script", sorted(BOOT_DIR.glob("*.sh")), ids=lambda path: path.name)
@needs_shellcheck
def test_boot_script_is_shellcheck_clean(script: Path) -> None:
    assert shutil.which("shellcheck"), "no shellcheck: apt-get install shellcheck"
    done = subprocess.run(
        ["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def needs_root_sshd() -> None:
    """Skips (fails under SIZZLE_REQUIRE_SSHD=1) without the real sshd and root."""
    if os.path.exists(SSHD) and os.geteuid() == 0:
        return
    if os.environ.get("SIZZLE_REQUIRE_SSHD"):
        pytest.fail(f"SIZZLE_REQUIRE_SSHD is set but there is no {SSHD} or we are not root")
    pytest.skip(f"needs Debian's openssh-server at {SSHD} and root, as in the container")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def public_key(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


def fake_bin(root: Path, *, gpus: int) -> Path:
    """A bin folder with the stub `ollama` and an `nvidia-smi` that lists `gpus` GPUs."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    shutil.copy(STUB_OLLAMA, bin_dir / "ollama")
    rows = "".join(
        f'echo "{i}, NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15"\n' for i in range(gpus)
    )
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\n{rows}")
    for tool in ("ollama", "nvidia-smi"):
        (bin_dir / tool).chmod(0o755)
    return bin_dir


@dataclass
class Instance:
    """A boot script running as a container would run it, and what the tests need to reach it."""

    process: subprocess.Popen[bytes]
    root: Path
    state_dir: Path
    ssh_port: int
    ollama_port: int
    ours: asyncssh.SSHKey
    users: asyncssh.SSHKey

    def status(self) -> str:
        try:
            return (self.state_dir / "status").read_text().strip()
        except FileNotFoundError:
            return ""

    def wait_for_status(self, prefix: str) -> str:
        deadline = time.monotonic() + BOOT_SECONDS
        while not self.status().startswith(prefix):
            exited = self.process.poll()
            assert exited is None, f"boot script exited {exited}; status {self.status()!r}"
            assert time.monotonic() < deadline, f"stuck at {self.status()!r}"
            time.sleep(0.1)
        return self.status()

    def output(self) -> str:
        return (self.root / "console.log").read_text()

    def connect(
        self, key: asyncssh.SSHKey
    ) -> AbstractAsyncContextManager[asyncssh.SSHClientConnection]:
        return asyncssh.connect(
            "127.0.0.1",
            self.ssh_port,
            username="root",
            client_keys=[key],
            known_hosts=None,
            agent_path=None,
            password=None,
            login_timeout=10,
        )

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # Each SSH connection's sshd child starts its own session; none may outlive the test.
        pid_file = self.state_dir / "sshd.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


@contextmanager
def boot(root: Path, *, gpus: int = 1, **env: str) -> Iterator[Instance]:
    """Runs the boot script as Vast would (argv `/bin/sh -c <script>`) in its own process
    group; stops the whole group when the block ends.

    The state dir is made under /run: sshd's StrictModes refuses an authorized_keys file below
    a group- or world-writable folder such as /tmp, as it would on the instance.
    """
    ours, users = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    state_dir = Path(tempfile.mkdtemp(prefix="sizzle-boot-test-", dir="/run"))
    instance_env = {
        "PATH": f"{fake_bin(root, gpus=gpus)}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "SIZZLE_SSH_PUBLIC_KEY": public_key(ours),
        "SIZZLE_USER_SSH_KEYS": f"\n{public_key(users)}\nnot a key\n",
        "SIZZLE_MODEL": MODEL,
        "SIZZLE_SSH_PORT": str(free_port()),
        "SIZZLE_STATE_DIR": str(state_dir),
        "OLLAMA_PORT": str(free_port()),
        "OLLAMA_HOST": "0.0.0.0:11434",  # what the ollama/ollama image sets; ours must win
        "STUB_OLLAMA_RECORD": str(root / "ollama-serve.json"),
        **env,
    }
    with (root / "console.log").open("wb") as console:
        process = subprocess.Popen(
            ["/bin/sh", "-c", boot_script("instance.sh")],
            env=instance_env,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    instance = Instance(
        process=process,
        root=root,
        state_dir=state_dir,
        ssh_port=int(instance_env["SIZZLE_SSH_PORT"]),
        ollama_port=int(instance_env["OLLAMA_PORT"]),
        ours=ours,
        users=users,
    )
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """One instance booted to `ready`, shared by the tests that only look at it."""
    needs_root_sshd()
    with boot(tmp_path_factory.mktemp("instance")) as booted:
        booted.wait_for_status("ready")
        yield booted


def test_boot_ends_ready_after_each_phase_in_order(instance: Instance) -> None:
    phases = [
        line.split("status: ", 1)[1]
        for line in (instance.state_dir / "boot.log").read_text().splitlines()
        if "status: " in line
    ]
    assert phases == [
        "starting-ssh",
        "checking-gpu",
        "starting-model-server",
        "pulling-model",
        "ready",
    ]
    assert '"status": "success"' in (instance.state_dir / "pull.log").read_text()
    assert "NVIDIA H100" in (instance.state_dir / "gpus.csv").read_text()


async def test_our_key_logs_in(instance: Instance) -> None:
    async with instance.connect(instance.ours) as conn:
        done = await conn.run("true", check=True)
    assert done.exit_status == 0


async def test_the_users_own_key_logs_in_next_to_ours(instance: Instance) -> None:
    async with instance.connect(instance.users) as conn:
        await conn.run("true", check=True)
    authorized = (instance.state_dir / "authorized_keys").read_text().splitlines()
    assert authorized == [public_key(instance.ours), public_key(instance.users)]
    assert "skipped SIZZLE_USER_SSH_KEYS line 3" in instance.output()


async def test_another_key_is_refused(instance: Instance) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        async with instance.connect(stranger):
            pass


async def test_passwords_are_not_offered(instance: Instance) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        async with asyncssh.connect(
            "127.0.0.1",
            instance.ssh_port,
            username="root",
            password="hunter2",  # noqa: S106 - a wrong password, which must not even be asked
            client_keys=None,
            known_hosts=None,
            agent_path=None,
            login_timeout=10,
        ):
            pass


def non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1; a UDP connect sends nothing
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_the_model_server_listens_on_loopback_only(instance: Instance) -> None:
    served = json.loads((instance.root / "ollama-serve.json").read_text())
    assert served["OLLAMA_HOST"] == f"127.0.0.1:{instance.ollama_port}"
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to try")
    with pytest.raises(OSError), socket.create_connection((address, instance.ollama_port), 2):
        pass


async def test_the_model_is_listed_through_an_ssh_tunnel(instance: Instance) -> None:
    async with instance.connect(instance.ours) as conn:
        listener = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", instance.ollama_port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener.get_port()}") as http:
            tags = (await http.get("/api/tags", timeout=10)).json()
        listener.close()
    assert [model["name"] for model in tags["models"]] == [f"{MODEL}:latest"]


def test_state_files_are_private_and_keys_never_printed(instance: Instance) -> None:
    assert stat.S_IMODE(instance.state_dir.stat().st_mode) == 0o700
    for name in ("authorized_keys", "sshd_config", "ssh/ssh_host_ed25519_key"):
        assert stat.S_IMODE((instance.state_dir / name).stat().st_mode) == 0o600, name
    key_data = [public_key(key).split()[1] for key in (instance.ours, instance.users)]
    logs = [instance.output()] + [
        (instance.state_dir / name).read_text()
        for name in ("boot.log", "sshd.log", "ollama.log", "pull.log", "status")
    ]
    assert not [data for data in key_data for log in logs if data in log]


def test_no_gpu_is_a_failed_boot_that_keeps_ssh_for_diagnosis(tmp_path: Path) -> None:
    needs_root_sshd()
    with boot(tmp_path, gpus=0) as instance:
        assert instance.wait_for_status("failed") == "failed: no GPU visible to nvidia-smi"
        assert instance.process.poll() is None  # sshd held up, so Sizzle can read why
        assert not (instance.root / "ollama-serve.json").exists()


ED25519 = public_key(asyncssh.generate_private_key("ssh-ed25519"))


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SIZZLE_SSH_PUBLIC_KEY": None}, "SIZZLE_SSH_PUBLIC_KEY is not set"),
        ({"SIZZLE_SSH_PUBLIC_KEY": ""}, "SIZZLE_SSH_PUBLIC_KEY is not set"),
        ({"SIZZLE_SSH_PUBLIC_KEY": "hello"}, "not a single OpenSSH public key line"),
        ({"SIZZLE_SSH_PUBLIC_KEY": f"{ED25519}\n{ED25519}"}, "not a single OpenSSH public key"),
        ({"SIZZLE_SSH_PUBLIC_KEY": f'command="sh" {ED25519}'}, "not a single OpenSSH public"),
        ({"SIZZLE_SSH_PUBLIC_KEY": ED25519[:52]}, "does not parse"),
        ({"SIZZLE_MODEL": "--insecure"}, "SIZZLE_MODEL is not a model tag"),
        ({"SIZZLE_SSH_PORT": "22; reboot"}, "SIZZLE_SSH_PORT is not a port number"),
    ],
    ids=["missing", "empty", "garbled", "two-lines", "with-options", "bad-data", "model", "port"],
)
def test_bad_inputs_are_refused_at_once(
    tmp_path: Path, env: dict[str, str | None], says: str
) -> None:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SIZZLE_SSH_PUBLIC_KEY": ED25519,
        "SIZZLE_STATE_DIR": str(tmp_path / "state"),
        "SIZZLE_SSH_PORT": str(free_port()),
    }
    run_env = {name: value for name, value in {**base, **env}.items() if value is not None}
    process = subprocess.Popen(
        ["/bin/sh", "-c", boot_script("instance.sh")],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the boot script did not refuse {sorted(env)}: it went on booting")
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # and any sshd it started
        process.wait()
    assert process.returncode != 0
    assert says in stderr
    assert ED25519.split()[1][:20] not in stdout + stderr


def test_a_stop_signal_to_the_script_alone_stops_sshd_and_the_model_server(
    tmp_path: Path,
) -> None:
    needs_root_sshd()
    with boot(tmp_path) as instance:
        instance.wait_for_status("ready")
        sshd_pid = int((instance.state_dir / "sshd.pid").read_text())
        ollama_pid = json.loads((tmp_path / "ollama-serve.json").read_text())["pid"]
        instance.process.send_signal(signal.SIGTERM)  # what `docker stop` sends to PID 1
        assert instance.process.wait(timeout=10) == 143
        deadline = time.monotonic() + 10
        while (alive(sshd_pid) or alive(ollama_pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(sshd_pid) and not alive(ollama_pid)


def test_the_script_ends_when_the_model_server_does(tmp_path: Path) -> None:
    needs_root_sshd()
    with boot(tmp_path) as instance:
        instance.wait_for_status("ready")
        os.kill(json.loads((tmp_path / "ollama-serve.json").read_text())["pid"], signal.SIGKILL)
        assert instance.process.wait(timeout=10) != 0
        assert instance.status() == "failed: ollama serve exited with status 137"
