"""Saved chats: a user's conversations with their messages, listed, searched, renamed and
deleted; and the size caps that keep them within bounds. The messages themselves are written
by the chat relay's batched writer (services/chat_saving.py), off the answer's path; a chat is
exported by services/chat_export.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import Conversation, ConversationMessage, GpuSession
from sizzle.errors import NotFound, PayloadTooLarge
from sizzle.settings import Settings

DEFAULT_TITLE = "New chat"
TITLE_LENGTH = 80  # a title made from the first question keeps this much of it
# Settings a conversation may carry, and their bounds (the API and the page check them).
TEMPERATURE_RANGE = (0.0, 2.0)
MAX_TOKENS_RANGE = (1, 32_768)
SYSTEM_PROMPT_LENGTH = 20_000
SETTINGS = ("system_prompt", "temperature", "max_tokens")


@dataclass(frozen=True)
class Caps:
    """How much text one chat, and all of one account's chats, may hold (bytes)."""

    per_conversation: int
    per_user: int


def caps_of(settings: Settings) -> Caps:
    return Caps(settings.chat_max_bytes_per_conversation, settings.chat_max_bytes_per_user)


def title_from(question: str) -> str:
    """A title from the first question: its first line, shortened to a readable length."""
    line = " ".join(question.split())
    if len(line) <= TITLE_LENGTH:
        return line or DEFAULT_TITLE
    return line[: TITLE_LENGTH - 1].rstrip() + "…"


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size // 1000} kB"


async def user_size(tx: AsyncSession, user_id: str) -> int:
    total = await tx.scalar(
        select(func.coalesce(func.sum(Conversation.size_bytes), 0)).where(
            Conversation.user_id == user_id
        )
    )
    return int(total or 0)


async def _require_user_room(
    tx: AsyncSession, user_id: str, caps: Caps, *, adding: int = 0
) -> None:
    used = await user_size(tx, user_id)
    if used >= caps.per_user or used + adding > caps.per_user:
        raise PayloadTooLarge(
            f"Your saved chats have reached their limit of {_megabytes(caps.per_user)}. "
            "Delete some old chats on the Chats page to save new messages.",
            code="chats_full",
        )


async def get_conversation(tx: AsyncSession, conversation_id: str, *, user_id: str) -> Conversation:
    """The user's conversation; 404 for one that is not theirs, as for one that is not there."""
    found = await tx.get(Conversation, conversation_id)
    if found is None or found.user_id != user_id:
        raise NotFound("chat not found")
    return found


async def check_room(
    tx: AsyncSession, conversation_id: str, *, user_id: str, caps: Caps, adding: int = 0
) -> Conversation:
    """The user's conversation, if it may take another exchange whose question holds `adding`
    bytes (its text and images); 413 with what to do when it, or all the user's chats
    together, are full or would be."""
    found = await get_conversation(tx, conversation_id, user_id=user_id)
    used = found.size_bytes
    if used >= caps.per_conversation or used + adding > caps.per_conversation:
        raise PayloadTooLarge(
            f"This chat has reached its limit of {_megabytes(caps.per_conversation)}. "
            "Start a new chat to carry on.",
            code="chat_full",
        )
    await _require_user_room(tx, user_id, caps, adding=adding)
    return found


async def create(
    tx: AsyncSession,
    *,
    user_id: str,
    now: datetime,
    caps: Caps,
    title: str | None = None,
    session_id: str | None = None,
    model: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Conversation:
    """A new, empty conversation; held with the user's session `session_id` (its model) if
    named. 413 when the user's chats are full."""
    await _require_user_room(tx, user_id, caps)
    if session_id is not None:
        session = await tx.get(GpuSession, session_id)
        if session is None or session.user_id != user_id:
            raise NotFound("session not found")
        model = model or session.model
    row = Conversation(
        id=uuid.uuid4().hex,
        user_id=user_id,
        title=(title or "").strip() or DEFAULT_TITLE,
        model=model,
        session_id=session_id,
        size_bytes=0,
        created_at=now,
        updated_at=now,
        **(settings or {}),
    )
    tx.add(row)
    await tx.flush()
    return row


async def list_conversations(
    tx: AsyncSession, *, user_id: str, query: str | None, limit: int, offset: int
) -> tuple[list[Conversation], int]:
    """The user's conversations, most recently used first; with `query`, those whose title or
    a message holds it (case aside)."""
    where = [Conversation.user_id == user_id]
    if query:
        in_messages = exists().where(
            ConversationMessage.conversation_id == Conversation.id,
            ConversationMessage.content.icontains(query, autoescape=True),
        )
        where.append(or_(Conversation.title.icontains(query, autoescape=True), in_messages))
    total = await tx.scalar(select(func.count()).select_from(Conversation).where(*where))
    rows = await tx.scalars(
        select(Conversation)
        .where(*where)
        .order_by(Conversation.updated_at.desc(), Conversation.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total or 0)


async def messages_of(tx: AsyncSession, conversation_id: str) -> list[ConversationMessage]:
    rows = await tx.scalars(
        select(ConversationMessage)
        .where(ConversationMessage.conversation_id == conversation_id)
        .order_by(ConversationMessage.id)
    )
    return list(rows)


async def update(
    tx: AsyncSession, conversation_id: str, *, user_id: str, changes: dict[str, Any], now: datetime
) -> Conversation:
    """Rename it, or change its settings (only the fields given; None clears a setting)."""
    row = await get_conversation(tx, conversation_id, user_id=user_id)
    if "title" in changes:
        row.title = (changes["title"] or "").strip() or DEFAULT_TITLE
    for name in SETTINGS:
        if name in changes:
            setattr(row, name, changes[name])
    row.updated_at = now
    await tx.flush()
    return row


async def remove(tx: AsyncSession, conversation_id: str, *, user_id: str) -> None:
    """Delete the conversation and its messages for good."""
    await get_conversation(tx, conversation_id, user_id=user_id)
    await _delete_where(tx, Conversation.id == conversation_id)


async def remove_all_of_user(tx: AsyncSession, user_id: str) -> None:
    """Every conversation of the user (account deletion)."""
    await _delete_where(tx, Conversation.user_id == user_id)


async def _delete_where(tx: AsyncSession, condition: Any) -> None:
    ids = select(Conversation.id).where(condition).scalar_subquery()
    await tx.execute(
        delete(ConversationMessage).where(ConversationMessage.conversation_id.in_(ids))
    )
    await tx.execute(delete(Conversation).where(condition))
