"""Fixtures of the workload tests: a real sshd as the instance, a session row to key."""

from __future__ import annotations

import uuid

import pytest

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import GpuSession
from tests.helpers import make_user
from tests.sshd import sshd  # noqa: F401 - the sshd fixture, for every test here


@pytest.fixture
async def session_id(db: Database, clock: FakeClock) -> str:
    """A session in the database, for a key pair to belong to."""
    user = await make_user(db, now=clock.now())
    sid = uuid.uuid4().hex
    async with db.transaction() as tx:
        tx.add(
            GpuSession(
                id=sid,
                user_id=user.id,
                tier="starter",
                status="provisioning",
                price_micros_per_minute=1000,
                created_at=clock.now(),
            )
        )
    return sid
