"""The session state machine: the transition table over every (from, to) pair, and the one
function that applies it."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime

import pytest
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, SessionEvent, User
from sizzle.domain.lifecycle import SessionStatus, can_transition
from sizzle.errors import InvalidTransition
from sizzle.services import ledger
from sizzle.services.lifecycle import switch_status

S = SessionStatus

# Written out by hand from DESIGN.md's "Session lifecycle", not derived from TRANSITIONS:
# pending -> provisioning -> ready -> active <-> paused -> stopping -> terminated, a live
# session may be stopped before it runs, and `failed` is reachable from any non-final state.
ALLOWED: frozenset[tuple[SessionStatus, SessionStatus]] = frozenset(
    {
        (S.PENDING, S.PROVISIONING),
        (S.PENDING, S.STOPPING),
        (S.PENDING, S.FAILED),
        (S.PROVISIONING, S.READY),
        (S.PROVISIONING, S.STOPPING),
        (S.PROVISIONING, S.FAILED),
        (S.READY, S.ACTIVE),
        (S.READY, S.STOPPING),
        (S.READY, S.FAILED),
        (S.ACTIVE, S.PAUSED),
        (S.ACTIVE, S.STOPPING),
        (S.ACTIVE, S.FAILED),
        (S.PAUSED, S.ACTIVE),
        (S.PAUSED, S.STOPPING),
        (S.PAUSED, S.FAILED),
        (S.STOPPING, S.TERMINATED),
        (S.STOPPING, S.FAILED),
    }
)
ALL_PAIRS = list(itertools.product(SessionStatus, SessionStatus))


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=lambda s: s.value)
def test_transition_table_allows_exactly_the_designed_moves(
    current: SessionStatus, target: SessionStatus
) -> None:
    assert can_transition(current, target) is ((current, target) in ALLOWED)


@pytest.mark.parametrize("status", list(SessionStatus), ids=lambda s: s.value)
def test_only_terminated_and_failed_are_terminal(status: SessionStatus) -> None:
    assert status.is_terminal() is (status in (S.TERMINATED, S.FAILED))


@pytest.mark.parametrize("status", [S.TERMINATED, S.FAILED], ids=lambda s: s.value)
def test_a_terminal_status_has_no_way_out(status: SessionStatus) -> None:
    assert not any(can_transition(status, target) for target in SessionStatus)


async def _new_session(db: Database, *, status: SessionStatus, now: datetime) -> str:
    """A user and one of their sessions in `status`; the session id."""
    user_id, session_id = uuid.uuid4().hex, uuid.uuid4().hex
    async with db.transaction() as tx:
        tx.add(
            User(
                id=user_id,
                email=f"{user_id}@example.com",
                password_hash="not-a-real-hash",
                plan="free",
                created_at=now,
            )
        )
        await tx.flush()
        await ledger.open_user_accounts(tx, user_id)
        tx.add(
            GpuSession(
                id=session_id,
                user_id=user_id,
                tier="starter",
                status=status.value,
                price_micros_per_minute=150_000,
                charged_minutes=0,
                active_ms_before=0,
                created_at=now,
            )
        )
    return session_id


async def _events_of(db: Database, session_id: str) -> list[SessionEvent]:
    async with db.transaction() as tx:
        rows = await tx.scalars(select(SessionEvent).where(SessionEvent.session_id == session_id))
        return list(rows)


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.PENDING, S.ACTIVE), (S.READY, S.PAUSED), (S.TERMINATED, S.ACTIVE), (S.FAILED, S.STOPPING)],
    ids=lambda s: s.value,
)
async def test_switch_status_refuses_a_forbidden_move_and_records_nothing(
    db: Database, clock: FakeClock, current: SessionStatus, target: SessionStatus
) -> None:
    session_id = await _new_session(db, status=current, now=clock.now())

    async with db.transaction() as tx:
        session = await tx.get(GpuSession, session_id)
        assert session is not None
        with pytest.raises(InvalidTransition):
            await switch_status(tx, session, target, actor="user:someone", now=clock.now())

    async with db.transaction() as tx:
        stored = await tx.get(GpuSession, session_id)
        assert stored is not None and stored.status == current.value
    assert await _events_of(db, session_id) == []


async def test_switch_status_records_one_event_with_who_and_why(
    db: Database, clock: FakeClock
) -> None:
    session_id = await _new_session(db, status=S.PENDING, now=clock.now())
    clock.advance(3)

    async with db.transaction() as tx:
        session = await tx.get(GpuSession, session_id)
        assert session is not None
        await switch_status(
            tx,
            session,
            S.PROVISIONING,
            actor="system:provisioner",
            now=clock.now(),
            reason="claimed",
        )

    [event] = await _events_of(db, session_id)
    assert (event.from_status, event.to_status) == ("pending", "provisioning")
    assert (event.actor, event.reason) == ("system:provisioner", "claimed")
    assert event.created_at == clock.now()
    async with db.transaction() as tx:
        stored = await tx.get(GpuSession, session_id)
        assert stored is not None and stored.status == "provisioning"
