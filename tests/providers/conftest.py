"""Fixtures of the provider tests: a real sshd, standing for a node reached over SSH."""

from __future__ import annotations

from tests.sshd import sshd  # noqa: F401 - the sshd fixture, for every test here
