"""Boot scripts run on rented instances, kept as files beside this module (shellcheck clean)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from importlib import resources

_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def boot_script(name: str) -> str:
    """The text of the boot script `name` (e.g. "instance.sh")."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def boot_command(name: str, env: Mapping[str, str]) -> str:
    """One command line for an SSH login that runs the boot script `name` as
    `/bin/sh -c <script>`, with `env` added to the login's environment: whatever the login
    shell, `env` sets the variables, and every value is quoted."""
    for variable in env:
        if not _NAME.match(variable):
            raise ValueError(f"not an environment variable name: {variable!r}")
    assignments = " ".join(f"{variable}={shlex.quote(value)}" for variable, value in env.items())
    return f"env {assignments} /bin/sh -c {shlex.quote(boot_script(name))} {shlex.quote(name)}"
