"""Readiness on a bare VM (SupportsSshBoot), the login with the provider's key that starts the
VM boot script: against a real sshd standing for the VM. A provider key the VM does not take yet
is "still starting"; a boot script that refuses its inputs is a failed instance; a VM that
presents another host key than the one pinned is refused before anything runs on it; the login
is not pooled in place of the session's own connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.providers.base import Boot, ProviderContext, SupportsSshBoot
from sizzle.services.readiness import MACHINE_STARTING, BootCheck, ReadinessProbe
from sizzle.settings import Settings
from sizzle.workload import keys
from sizzle.workload.endpoint import SshEndpoint
from sizzle.workload.keys import DatabaseHostKeys
from sizzle.workload.tunnel import Tunnels
from tests.conftest import TEST_SECRET
from tests.ssh_instance import ScriptedSsh
from tests.sshd import Sshd, needs_sshd
from tests.workload.test_boot_script import public_key
from tests.workload.vm import Vm, vm

MODEL = "llama3.2"


class BareVm(ScriptedSsh, SupportsSshBoot):
    """One VM, `vm-1`, at the sshd the test gives, booted with a key of the provider's."""

    name = "bare"
    label = "Bare VM"
    boot_script = "vm.sh"

    def __init__(self, context: ProviderContext, endpoint: SshEndpoint) -> None:
        super().__init__(context)
        self.endpoint = endpoint
        self.provisioned = ["vm-1"]
        self.key = asyncssh.generate_private_key("ssh-ed25519")

    def boot_key(self) -> asyncssh.SSHKey:
        return self.key


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[tuple[Vm, Sshd]]:
    with vm(tmp_path) as booted:
        yield booted


@pytest.fixture
async def probe(
    db: Database, clock: FakeClock, machine: tuple[Vm, Sshd]
) -> AsyncIterator[ReadinessProbe]:
    tunnels = Tunnels(DatabaseHostKeys(db))
    readiness = ReadinessProbe(db, tunnels, secret=TEST_SECRET, clock=clock)
    readiness.state_dir = str(machine[0].state_dir)
    readiness.model_port = machine[0].ollama_port
    yield readiness
    await tunnels.aclose()


@pytest.fixture
def bare(settings: Settings, clock: FakeClock, db: Database, machine: tuple[Vm, Sshd]) -> BareVm:
    context = ProviderContext(settings=settings, clock=clock, db=db)
    return BareVm(context, machine[1].endpoint)


async def check(
    probe: ReadinessProbe, bare: BareVm, session_id: str, boot: Boot | None = None
) -> BootCheck:
    async def given() -> Boot:
        assert boot is not None
        return boot

    return await probe.check(
        bare,
        session_id=session_id,
        instance_id="vm-1",
        model=MODEL,
        boot=given if boot is not None else None,
    )


@needs_sshd
async def test_a_provider_key_the_vm_does_not_take_yet_is_still_starting(
    probe: ReadinessProbe, bare: BareVm, machine: tuple[Vm, Sshd], session_id: str
) -> None:
    assert await check(probe, bare, session_id) == BootCheck(phase=MACHINE_STARTING)
    assert machine[0].status() == ""  # nothing ran on it


@needs_sshd
async def test_the_boot_starts_once_then_the_session_key_reads_it_through_to_ready(
    probe: ReadinessProbe,
    bare: BareVm,
    machine: tuple[Vm, Sshd],
    session_id: str,
    db: Database,
    clock: FakeClock,
) -> None:
    vm_, sshd = machine
    sshd.authorize(public_key(bare.key))
    users = asyncssh.generate_private_key("ssh-ed25519")
    async with db.transaction() as tx:
        pair = await keys.session_key(tx, session_id, secret=TEST_SECRET, now=clock.now())
    boot = Boot(ssh_public_key=pair.public_key, user_ssh_keys=(public_key(users),), model=MODEL)

    assert await check(probe, bare, session_id, boot) == BootCheck(phase=MACHINE_STARTING)
    assert vm_.authorized_keys.read_text().splitlines() == [
        public_key(bare.key),
        pair.public_key,
        public_key(users),
    ]
    assert probe.tunnels.open_url(session_id, sshd.endpoint) is None  # the boot login: gone
    vm_.wait_for_status("ready")
    assert await check(probe, bare, session_id, boot) == BootCheck(ready=True)
    assert vm_.boot_log().count("booting in the background") == 1


@needs_sshd
async def test_a_boot_script_that_refuses_its_inputs_is_a_failed_instance(
    probe: ReadinessProbe, bare: BareVm, machine: tuple[Vm, Sshd], session_id: str
) -> None:
    machine[1].authorize(public_key(bare.key))
    refused = Boot(ssh_public_key="not a key", model=MODEL)
    found = await check(probe, bare, session_id, refused)
    assert found.failure is not None and "not a single OpenSSH public key" in found.failure
    assert not machine[0].authorized_keys.read_text().strip().endswith("not a key")


@needs_sshd
async def test_a_vm_with_another_host_key_than_the_pinned_one_is_refused(
    probe: ReadinessProbe,
    bare: BareVm,
    machine: tuple[Vm, Sshd],
    session_id: str,
    db: Database,
    clock: FakeClock,
) -> None:
    machine[1].authorize(public_key(bare.key))
    other_host = asyncssh.generate_private_key("ssh-ed25519")
    async with db.transaction() as tx:
        await keys.session_key(tx, session_id, secret=TEST_SECRET, now=clock.now())
        await keys.pin_host_key(tx, session_id, public_key(other_host))
    found = await check(probe, bare, session_id)
    assert found.failure is not None and "another SSH host key" in found.failure
    assert machine[0].status() == ""
