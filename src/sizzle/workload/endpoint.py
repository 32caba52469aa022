"""Where an instance's SSH server answers: shared by the providers (which find it) and the
tunnels (which connect to it), so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SshEndpoint:
    """Where an instance's SSH server answers, and as whom to log in."""

    host: str
    port: int
    username: str
