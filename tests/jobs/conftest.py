"""Fixtures of the job tests: a real sshd, standing for an instance reached over SSH."""

from __future__ import annotations

from tests.sshd import sshd  # noqa: F401 - the sshd fixture, for every test here
