"""Saved chats: list and search, create, read with messages, rename or change settings, delete,
export as Markdown or JSON. A chat's messages are saved by the chat relay: send
`X-Sizzle-Conversation: <id>` with `/v1/chat/completions` (the page's chat does)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, Security, status
from pydantic import BaseModel, ConfigDict, Field

from sizzle.api.deps import IdPath, PagingDep, StateDep, get_current_user
from sizzle.api.openapi import error_responses
from sizzle.api.schemas import CleanStr, Page
from sizzle.db.models import Conversation, ConversationMessage, User
from sizzle.services import chat_export, conversations
from sizzle.services.conversations import MAX_TOKENS_RANGE, SYSTEM_PROMPT_LENGTH, TEMPERATURE_RANGE
from sizzle.services.model_library import model_name
from sizzle.state import AppState

router = APIRouter(prefix="/api/v1/conversations", tags=["chats"])

ChatsUser = Annotated[User, Security(get_current_user, scopes=["chats"])]
ConversationId = IdPath


class ChatSettings(BaseModel):
    """A conversation's own settings, sent with each of its requests (None: the model's)."""

    model_config = ConfigDict(extra="forbid")
    system_prompt: CleanStr | None = Field(None, max_length=SYSTEM_PROMPT_LENGTH)
    # strict: a number, not true or "1" read as one
    temperature: float | None = Field(
        None, ge=TEMPERATURE_RANGE[0], le=TEMPERATURE_RANGE[1], allow_inf_nan=False, strict=True
    )
    max_tokens: int | None = Field(
        None, ge=MAX_TOKENS_RANGE[0], le=MAX_TOKENS_RANGE[1], strict=True
    )


class ConversationIn(ChatSettings):
    title: CleanStr | None = Field(None, max_length=200)
    session_id: CleanStr | None = Field(
        None, max_length=64, description="The session it is held with (its model is taken)."
    )
    model: CleanStr | None = Field(None, max_length=200)


class ConversationPatch(ChatSettings):
    title: CleanStr | None = Field(None, max_length=200)


class MessageOut(BaseModel):
    id: int
    role: str
    content: str
    status: str = Field(description="done; streaming while it is written; stopped; failed.")
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    parts: list[dict[str, Any]] | None = Field(
        None,
        description="A question sent with images: its content parts, as sent again when the "
        "chat carries on (only inline PNG, JPEG, WebP and GIF images are kept).",
    )
    attached: dict[str, Any] | None = Field(
        None,
        description="A question sent from the page with files: `question` as typed and "
        "`files`, each with its `name`, `kind` and `note` (`content` holds the files' text).",
    )
    created_at: datetime


class ConversationOut(BaseModel):
    id: str
    title: str
    model: str | None = Field(description="The model's tag, as its server knows it.")
    model_name: str | None = Field(None, description="The model's name, as the library says.")
    session_id: str | None = Field(description="The session it last ran on.")
    system_prompt: str | None
    temperature: float | None
    max_tokens: int | None
    size_bytes: int
    created_at: datetime
    updated_at: datetime


class ConversationWithMessages(ConversationOut):
    messages: list[MessageOut]


def conversation_out(row: Conversation) -> ConversationOut:
    out = ConversationOut.model_validate(row, from_attributes=True)
    out.model_name = model_name(row.model) if row.model else None
    return out


def with_messages(
    row: Conversation, messages: list[ConversationMessage]
) -> ConversationWithMessages:
    return ConversationWithMessages(
        **conversation_out(row).model_dump(),
        messages=[MessageOut.model_validate(m, from_attributes=True) for m in messages],
    )


@router.get("", response_model=Page[ConversationOut])
async def list_conversations(
    user: ChatsUser,
    state: StateDep,
    paging: PagingDep,
    q: Annotated[CleanStr | None, Query(max_length=200, description="Words to find.")] = None,
) -> Page[ConversationOut]:
    """My saved chats, most recently used first; `q` finds those whose title or text has it."""
    async with state.db.read() as tx:
        rows, total = await conversations.list_conversations(
            tx, user_id=user.id, query=q, limit=paging.limit, offset=paging.offset
        )
    return Page(items=[conversation_out(r) for r in rows], total=total)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ConversationOut,
    responses=error_responses(404, 413),
)
async def create(body: ConversationIn, user: ChatsUser, state: StateDep) -> ConversationOut:
    """A new, empty chat (its first question names it, unless a title is given)."""
    return await create_conversation(state, body, user_id=user.id)


async def create_conversation(
    state: AppState, body: ConversationIn, *, user_id: str
) -> ConversationOut:
    """Make the chat `body` asks for (the API's and the live page's)."""
    async with state.db.transaction() as tx:
        row = await conversations.create(
            tx,
            user_id=user_id,
            now=state.clock.now(),
            caps=conversations.caps_of(state.settings),
            title=body.title,
            session_id=body.session_id,
            model=body.model,
            settings=body.model_dump(include=set(conversations.SETTINGS)),
        )
    return conversation_out(row)


@router.get("/{conversation_id}", response_model=ConversationWithMessages)
async def read(
    conversation_id: ConversationId, user: ChatsUser, state: StateDep
) -> ConversationWithMessages:
    """One chat with its messages, oldest first (an answer being written shows what arrived)."""
    return await read_conversation(state, conversation_id, user_id=user.id)


async def read_conversation(
    state: AppState, conversation_id: str, *, user_id: str
) -> ConversationWithMessages:
    async with state.db.read() as tx:
        row = await conversations.get_conversation(tx, conversation_id, user_id=user_id)
        messages = await conversations.messages_of(tx, row.id)
    return with_messages(row, messages)


@router.patch("/{conversation_id}", response_model=ConversationOut)
async def change(
    conversation_id: ConversationId, body: ConversationPatch, user: ChatsUser, state: StateDep
) -> ConversationOut:
    """Rename it or change its settings: only the fields sent change (null clears one)."""
    return await change_conversation(state, conversation_id, body, user_id=user.id)


async def change_conversation(
    state: AppState, conversation_id: str, body: ConversationPatch, *, user_id: str
) -> ConversationOut:
    async with state.db.transaction() as tx:
        row = await conversations.update(
            tx,
            conversation_id,
            user_id=user_id,
            changes=body.model_dump(exclude_unset=True),
            now=state.clock.now(),
        )
    return conversation_out(row)


@router.delete("/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove(conversation_id: ConversationId, user: ChatsUser, state: StateDep) -> Response:
    """Delete the chat and its messages for good."""
    async with state.db.transaction() as tx:
        await conversations.remove(tx, conversation_id, user_id=user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{conversation_id}/export",
    responses={200: {"content": {"text/markdown": {}, "application/json": {}}}},
)
async def export(
    conversation_id: ConversationId,
    user: ChatsUser,
    state: StateDep,
    format: Annotated[Literal["markdown", "json"], Query()] = "markdown",  # noqa: A002
) -> Response:
    """The chat as a file to keep: Markdown (default) or JSON."""
    return await export_response(state, conversation_id, user_id=user.id, kind=format)


async def export_response(
    state: AppState, conversation_id: str, *, user_id: str, kind: str
) -> Response:
    """The download (the API's and the Chats page's)."""
    async with state.db.read() as tx:
        row = await conversations.get_conversation(tx, conversation_id, user_id=user_id)
        messages = await conversations.messages_of(tx, row.id)
    if kind == "json":
        text, media, extension = chat_export.as_json(row, messages), "application/json", "json"
    else:
        text, media, extension = chat_export.as_markdown(row, messages), "text/markdown", "md"
    name = chat_export.export_filename(row, extension)
    return Response(
        text,
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
