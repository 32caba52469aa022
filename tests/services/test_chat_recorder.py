"""The chat recorder writes requests' rows in batches, and what is pending when it closes."""

from __future__ import annotations

from sqlalchemy import func, select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import ChatRequest, GpuSession
from sizzle.services.chat_proxy import ChatRecorder
from tests.helpers import make_user


def _row(session_id: str, clock: FakeClock) -> ChatRequest:
    return ChatRequest(
        session_id=session_id,
        model="x:1b",
        stream=True,
        outcome="ok",
        status_code=200,
        prompt_tokens=3,
        completion_tokens=7,
        time_to_first_token_ms=12,
        duration_ms=90,
        created_at=clock.now(),
    )


async def _count(db: Database) -> int:
    async with db.read() as tx:
        return (await tx.scalar(select(func.count()).select_from(ChatRequest))) or 0


async def test_rows_wait_for_a_flush_and_close_writes_the_rest(
    db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    async with db.transaction() as tx:
        tx.add(
            GpuSession(
                id="s1",
                user_id=user.id,
                tier="starter",
                status="active",
                price_micros_per_minute=150_000,
                charged_minutes=0,
                active_ms_before=0,
                created_at=clock.now(),
            )
        )
    recorder = ChatRecorder(db, flush_seconds=3600)
    for _ in range(3):
        recorder.add(_row("s1", clock))
    assert await _count(db) == 0  # nothing written on the requests' path
    await recorder.flush()
    assert await _count(db) == 3
    recorder.add(_row("s1", clock))
    await recorder.close()
    assert await _count(db) == 4
