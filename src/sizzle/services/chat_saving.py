"""Saving chats as they happen, off the answer's path: the user's message and the answer as it
streams are gathered in memory and written in batches (at most one write a second however many
chats run, one more as each answer ends), so that a reload mid-answer shows what had arrived
and the first token waits for no write."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import insert, select, update

from sizzle.clock import Clock
from sizzle.db.database import Database
from sizzle.db.models import Conversation, ConversationMessage
from sizzle.domain.images import images_size, kept_parts
from sizzle.services.batched import BatchedWrites
from sizzle.services.conversations import DEFAULT_TITLE, title_from

log = structlog.get_logger(__name__)

MAX_TRIES = 3  # a turn whose writes keep failing is given up (logged), not retried forever
_ENDED = {"ok": "done", "cancelled": "stopped"}  # every other outcome: failed


def question_text(messages: list[dict[str, Any]]) -> str | None:
    """The text of the request's last message if the user wrote it: the question to save."""
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: their text
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        return "\n\n".join(t for t in texts if isinstance(t, str))
    return None


def question_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The content parts of the request's last message, as kept, when the user sent images."""
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    return kept_parts(last.get("content"))


def question_size(messages: list[dict[str, Any]]) -> int:
    """The bytes saving the request's question adds to its chat: its text and its images."""
    return _size(question_text(messages), question_parts(messages))


def _size(question: str | None, parts: list[dict[str, Any]] | None) -> int:
    return 0 if question is None else len(question.encode()) + images_size(parts)


class SavedTurn:
    """One exchange being saved: the question (if any) and the answer as it arrives."""

    def __init__(
        self,
        saver: ChatSaver,
        *,
        conversation_id: str,
        session_id: str,
        model: str,
        question: str | None,
        now: datetime,
        parts: list[dict[str, Any]] | None = None,
        attached: dict[str, Any] | None = None,
    ) -> None:
        self.saver = saver
        self.conversation_id, self.session_id, self.model = conversation_id, session_id, model
        self.question, self.parts, self.attached = question, parts, attached
        self.started_at = now
        self.pieces: list[str] = []
        self.status = "streaming"
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.answer_id: int | None = None  # set once its row is written
        self.saved_bytes = 0  # what its rows held at the last write
        self.dirty = True
        self.failures = 0

    def observe(self, chunk: dict[str, Any]) -> None:
        """A chunk of the answer (a stream's delta or a whole answer's message)."""
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            part = choice.get("delta") or choice.get("message")
            text = part.get("content") if isinstance(part, dict) else None
            if isinstance(text, str) and text:
                self.pieces.append(text)
                self.dirty = True
                self.saver.flush_soon()

    def finish(self, outcome: str, *, prompt_tokens: int | None, completion: int | None) -> None:
        """The answer ended (`outcome` as the chat meter says): written at once."""
        self.status = _ENDED.get(outcome, "failed")
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion
        self.dirty = True
        self.saver.flush_now()

    @property
    def typed(self) -> str:
        """The question as the user typed it (without the text of the files it went with)."""
        return str((self.attached or {}).get("question") or self.question or "")

    @property
    def question_size(self) -> int:
        """The bytes its question holds: its text and its images."""
        return _size(self.question, self.parts)

    @property
    def ended(self) -> bool:
        return self.status != "streaming"


class ChatSaver(BatchedWrites):
    """Writes the turns being saved, in batches. A crash loses at most the last second of an
    answer; the answer then stays marked as still being written."""

    def __init__(self, db: Database, clock: Clock, *, flush_seconds: float = 1.0) -> None:
        super().__init__(flush_seconds=flush_seconds)
        self.db, self.clock = db, clock
        self._turns: list[SavedTurn] = []
        self._lock = asyncio.Lock()
        self._now_tasks: set[asyncio.Task[None]] = set()

    def begin(
        self,
        *,
        conversation_id: str,
        session_id: str,
        model: str,
        messages: list[dict[str, Any]],
        attached: dict[str, Any] | None = None,
    ) -> SavedTurn:
        """A turn of `conversation_id`, saved from now on (nothing is written here). The
        question keeps its images, and `attached`: what the page showed of it with files."""
        turn = SavedTurn(
            self,
            conversation_id=conversation_id,
            session_id=session_id,
            model=model,
            question=question_text(messages),
            now=self.clock.now(),
            parts=question_parts(messages),
            attached=attached,
        )
        self._turns.append(turn)
        self.flush_soon()
        return turn

    def flush_now(self) -> None:
        """Flush without waiting for the interval (an answer ended)."""
        with contextlib.suppress(RuntimeError):  # no running loop: at the next flush or close
            task = asyncio.get_running_loop().create_task(self.flush())
            self._now_tasks.add(task)
            task.add_done_callback(self._now_tasks.discard)

    async def close(self) -> None:
        if self._now_tasks:
            await asyncio.gather(*self._now_tasks, return_exceptions=True)
        await super().close()

    async def flush(self) -> None:
        """Write every turn with something new; forget the ended ones once written."""
        async with self._lock:
            due = [turn for turn in self._turns if turn.dirty]
            if due:
                await self._write(due)
            self._turns = [t for t in self._turns if t.dirty or not t.ended]

    async def _write(self, turns: list[SavedTurn]) -> None:
        snapshots = []
        for turn in turns:
            turn.dirty = False
            snapshots.append((turn, "".join(turn.pieces), turn.status))
        written: list[tuple[SavedTurn, int | None, int]] = []
        try:
            async with self.db.transaction() as tx:
                ids = {t.conversation_id for t in turns}
                there = set(
                    await tx.scalars(select(Conversation.id).where(Conversation.id.in_(ids)))
                )
                now = self.clock.now()
                for turn, answer, status in snapshots:
                    if turn.conversation_id not in there:  # deleted meanwhile: nothing to keep
                        turn.status = "gone"
                        continue
                    written.append((turn, *await _write_turn(tx, turn, answer, status, now)))
        except Exception as exc:  # saving must never break a chat
            log.warning("chat.save_failed", turns=len(turns), error=str(exc))
            for turn in turns:
                turn.failures += 1
                turn.dirty = turn.failures < MAX_TRIES
                if not turn.dirty:
                    turn.status = "gone"
            return
        for turn, answer_id, size in written:  # committed: later writes update these rows
            turn.answer_id, turn.saved_bytes = answer_id, size


async def _write_turn(
    tx: Any, turn: SavedTurn, answer: str, status: str, now: datetime
) -> tuple[int | None, int]:
    """Insert the turn's rows (the first time) or update its answer; the conversation's size
    and last use follow. Returns the answer's id and the size the rows now hold."""
    size = len(answer.encode()) + turn.question_size
    values = {
        "content": answer,
        "status": status,
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": turn.completion_tokens,
    }
    answer_id = turn.answer_id
    if answer_id is None:
        common = {
            "conversation_id": turn.conversation_id,
            "created_at": turn.started_at,
            "session_id": turn.session_id,
        }
        if turn.question is not None:
            await tx.execute(
                insert(ConversationMessage).values(
                    role="user",
                    content=turn.question,
                    status="done",
                    parts=turn.parts,
                    attached=turn.attached,
                    **common,
                )
            )
            await tx.execute(
                update(Conversation)
                .where(Conversation.id == turn.conversation_id)
                .where(Conversation.title == DEFAULT_TITLE)
                .values(title=title_from(turn.typed))
            )
        answer_id = await tx.scalar(
            insert(ConversationMessage)
            .values(role="assistant", model=turn.model, **common, **values)
            .returning(ConversationMessage.id)
        )
    else:
        await tx.execute(
            update(ConversationMessage).where(ConversationMessage.id == answer_id).values(**values)
        )
    await tx.execute(
        update(Conversation)
        .where(Conversation.id == turn.conversation_id)
        .values(
            updated_at=now,
            session_id=turn.session_id,
            model=turn.model,
            size_bytes=Conversation.size_bytes + (size - turn.saved_bytes),
        )
    )
    return answer_id, size
