"""Boot scripts run on rented instances, kept as files beside this module (shellcheck clean)."""

from __future__ import annotations

from importlib import resources


def boot_script(name: str) -> str:
    """The text of the boot script `name` (e.g. "instance.sh")."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
