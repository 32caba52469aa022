"""The VM boot script (`vm.sh`, Lambda's), run for real as Sizzle runs it on the VM (argv
`/bin/sh -c <script>` as the login user) with a real sshd reading the login user's
authorized_keys, a stub `ollama` and a stub `nvidia-smi`: it returns at once and boots on in the
background to `ready` with the model listed; our key and the user's then log in next to the key
the provider put there; the model server listens on loopback only; run twice, it starts no
second server; bad inputs are refused before anything changes."""

from __future__ import annotations

import stat
import subprocess
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import asyncssh
import httpx
import pytest

from sizzle.workload.boot import boot_script
from tests.providers.fakes.server import free_port
from tests.sshd import Sshd, needs_sshd
from tests.workload.test_boot_script import public_key
from tests.workload.vm import Vm, vm

MODEL = "llama3.2"
RETURNS_WITHIN_SECONDS = 20


def run_script(machine: Vm, **env: str) -> subprocess.CompletedProcess[str]:
    """vm.sh as Sizzle's SSH command runs it; it must return while the boot goes on."""
    return subprocess.run(
        ["/bin/sh", "-c", boot_script("vm.sh")],
        env={**machine.environment, "SIZZLE_STATE_DIR": str(machine.state_dir), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RETURNS_WITHIN_SECONDS,
    )


def inputs(machine: Vm, ours: asyncssh.SSHKey, users: asyncssh.SSHKey) -> dict[str, str]:
    return {
        "SIZZLE_SSH_PUBLIC_KEY": public_key(ours),
        "SIZZLE_USER_SSH_KEYS": f"{public_key(users)}\nnot a key\n",
        "SIZZLE_MODEL": MODEL,
        "OLLAMA_PORT": str(machine.ollama_port),
    }


def connect(
    sshd: Sshd, key: asyncssh.SSHKey
) -> AbstractAsyncContextManager[asyncssh.SSHClientConnection]:
    return asyncssh.connect(
        "127.0.0.1",
        sshd.port,
        username=sshd.username,
        client_keys=[key],
        known_hosts=None,
        agent_path=None,
        login_timeout=10,
    )


@needs_sshd
async def test_the_vm_boots_to_ready_and_our_key_reaches_the_listed_model(tmp_path: Path) -> None:
    ours, users, providers = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(3))
    with vm(tmp_path) as (machine, sshd):
        sshd.authorize(public_key(providers))  # what Lambda put there at launch
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(sshd, ours):
                pass

        done = run_script(machine, **inputs(machine, ours, users))
        assert done.returncode == 0, done.stderr
        assert machine.wait_for_status("ready") == "ready"

        phases = [
            line.split("status: ", 1)[1]
            for line in machine.boot_log().splitlines()
            if "status: " in line
        ]
        assert phases == ["checking-gpu", "starting-model-server", "pulling-model", "ready"]
        assert machine.authorized_keys.read_text().splitlines() == [
            public_key(providers),
            public_key(ours),
            public_key(users),
        ]
        assert "skipped SIZZLE_USER_SSH_KEYS line 2" in machine.boot_log()
        assert machine.served()["OLLAMA_HOST"] == f"127.0.0.1:{machine.ollama_port}"

        for key in (ours, users):
            async with connect(sshd, key) as conn:
                await conn.run("true", check=True)
        async with connect(sshd, ours) as conn:
            listener = await conn.forward_local_port(
                "127.0.0.1", 0, "127.0.0.1", machine.ollama_port
            )
            url = f"http://127.0.0.1:{listener.get_port()}"
            async with httpx.AsyncClient(base_url=url) as http:
                tags = (await http.get("/api/tags", timeout=10)).json()
                answer = await http.post(
                    "/api/generate", json={"model": MODEL, "prompt": "hi"}, timeout=10
                )
            listener.close()
        assert [model["name"] for model in tags["models"]] == [f"{MODEL}:latest"]
        assert answer.json()["done"] is True


@needs_sshd
def test_run_twice_it_starts_no_second_model_server_nor_adds_a_key_twice(tmp_path: Path) -> None:
    ours, users = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    with vm(tmp_path) as (machine, _sshd):
        assert run_script(machine, **inputs(machine, ours, users)).returncode == 0
        machine.wait_for_status("ready")
        served = machine.served()

        again = run_script(machine, **inputs(machine, ours, users))
        assert again.returncode == 0, again.stderr
        assert "a boot is already running" in again.stderr
        assert machine.served() == served  # the stub records each start: there was none
        assert machine.status() == "ready"
        assert machine.authorized_keys.read_text().splitlines() == [
            public_key(ours),
            public_key(users),
        ]


@needs_sshd
def test_a_server_that_answers_is_used_when_the_boot_before_has_ended(tmp_path: Path) -> None:
    ours, users = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    with vm(tmp_path) as (machine, _sshd):
        assert run_script(machine, **inputs(machine, ours, users)).returncode == 0
        machine.wait_for_status("ready")
        served = machine.served()
        (machine.state_dir / "boot.lock" / "pid").write_text("999999999\n")  # a boot that died

        assert run_script(machine, **inputs(machine, ours, users)).returncode == 0
        assert machine.wait_for_status("ready") == "ready"
        assert "already answers on 127.0.0.1" in machine.boot_log()
        assert machine.served() == served


@needs_sshd
def test_state_and_keys_are_private_and_keys_never_printed(tmp_path: Path) -> None:
    ours, users = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    with vm(tmp_path) as (machine, _sshd):
        done = run_script(machine, **inputs(machine, ours, users))
        machine.wait_for_status("ready")
        assert stat.S_IMODE(machine.state_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(machine.authorized_keys.stat().st_mode) == 0o600
        assert stat.S_IMODE(machine.authorized_keys.parent.stat().st_mode) == 0o700
        logs = [done.stdout, done.stderr] + [
            (machine.state_dir / name).read_text()
            for name in ("boot.log", "console.log", "ollama.log", "pull.log", "status")
        ]
        for key in (ours, users):
            assert not [log for log in logs if public_key(key).split()[1] in log]


@needs_sshd
def test_no_gpu_is_a_failed_boot_with_no_model_server(tmp_path: Path) -> None:
    ours, users = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    with vm(tmp_path, gpus=0) as (machine, _sshd):
        assert run_script(machine, **inputs(machine, ours, users)).returncode == 0
        assert machine.wait_for_status("failed") == "failed: no GPU visible to nvidia-smi"
        assert not (machine.root / "ollama-serve.json").exists()


def test_ollama_is_installed_when_absent(tmp_path: Path) -> None:
    """No ollama on PATH: the installer (a local stand-in for ollama.com's) is fetched and run,
    and the ollama it installs serves."""
    ours, users = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = Path(__file__).with_name("stub_ollama.py")
    installer = tmp_path / "install.sh"
    installer.write_text(
        f"#!/bin/sh\nset -e\ncp '{stub}' '{bin_dir}/ollama'\nchmod 755 '{bin_dir}/ollama'\n"
    )
    (bin_dir / "nvidia-smi").write_text('#!/bin/sh\necho "0, NVIDIA H100, 81559 MiB, 550"\n')
    (bin_dir / "nvidia-smi").chmod(0o755)
    machine = Vm(tmp_path, home, tmp_path / "state", bin_dir, free_port())
    try:
        done = run_script(
            machine,
            **inputs(machine, ours, users),
            SIZZLE_OLLAMA_INSTALLER=installer.as_uri(),
        )
        assert done.returncode == 0, done.stderr
        assert machine.wait_for_status("ready") == "ready"
        assert "status: installing-model-server" in machine.boot_log()
        assert (bin_dir / "ollama").exists()
    finally:
        machine.stop()


ED25519 = public_key(asyncssh.generate_private_key("ssh-ed25519"))


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SIZZLE_SSH_PUBLIC_KEY": ""}, "SIZZLE_SSH_PUBLIC_KEY is not set"),
        ({"SIZZLE_SSH_PUBLIC_KEY": "hello"}, "not a single OpenSSH public key line"),
        ({"SIZZLE_SSH_PUBLIC_KEY": f"{ED25519}\n{ED25519}"}, "not a single OpenSSH public key"),
        ({"SIZZLE_SSH_PUBLIC_KEY": f'command="sh" {ED25519}'}, "not a single OpenSSH public"),
        ({"SIZZLE_SSH_PUBLIC_KEY": ED25519[:52]}, "not a single OpenSSH public key"),
        ({"SIZZLE_MODEL": "--insecure"}, "SIZZLE_MODEL is not a model tag"),
        ({"OLLAMA_PORT": "11434; reboot"}, "OLLAMA_PORT is not a port number"),
        ({"SIZZLE_STATE_DIR": "relative"}, "SIZZLE_STATE_DIR must be an absolute path"),
    ],
    ids=["empty", "garbled", "two-lines", "with-options", "bad-data", "model", "port", "dir"],
)
def test_bad_inputs_are_refused_before_anything_changes(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    machine = Vm(tmp_path, home, tmp_path / "state", tmp_path, 11434)
    done = run_script(machine, **{"SIZZLE_SSH_PUBLIC_KEY": ED25519, **env})
    assert done.returncode == 2
    assert says in done.stderr
    assert ED25519.split()[1][:20] not in done.stdout + done.stderr
    assert not (home / ".ssh").exists()
    assert not machine.state_dir.exists()
