"""Saved chats on the site: the live page's chat (saved as it goes), the Chats page (list,
search, rename, delete, export) and one chat's own page. The live page's script reads and
makes chats through the JSON routes here, signed in by the session cookie."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from sizzle.api.deps import IdPath, PagingDep, StateDep
from sizzle.api.relay import RelayResponse
from sizzle.api.routers.conversations import (
    ChatSettings,
    ConversationIn,
    ConversationPatch,
    change_conversation,
    create_conversation,
    export_response,
    read_conversation,
)
from sizzle.api.routers.openai import MAX_BODY_BYTES, RawBody, parse_body
from sizzle.api.routers.sessions import SessionId
from sizzle.api.schemas import CleanStr
from sizzle.domain.context import fit_history
from sizzle.domain.images import without_earlier_images
from sizzle.errors import ValidationFailed
from sizzle.services import conversations
from sizzle.services.attachments import MAX_NAME_CHARS
from sizzle.services.carry_on import carry_on
from sizzle.services.chat_saving import question_size, question_text
from sizzle.services.model_library import chat_context
from sizzle.services.workspace import chat_session, sees_images
from sizzle.web.deps import CsrfChecked, SignedIn
from sizzle.web.render import render

router = APIRouter(include_in_schema=False)


class AttachedFile(BaseModel):
    """A file that went with the question, as the page listed it (the note Sizzle wrote)."""

    model_config = ConfigDict(extra="forbid")
    name: CleanStr = Field(min_length=1, max_length=MAX_NAME_CHARS)
    kind: Literal["text", "markdown", "csv", "pdf", "image"]
    note: CleanStr = Field(min_length=1, max_length=400)


class Attached(BaseModel):
    """What the page shows of a question sent with files: the question as typed (the end of
    the message's text; the documents' text comes before it) and the files' notes."""

    model_config = ConfigDict(extra="forbid")
    question: CleanStr = Field(max_length=MAX_BODY_BYTES)
    files: list[AttachedFile] = Field(min_length=1, max_length=20)


class WebChatIn(ChatSettings):
    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]] = Field(min_length=1, max_length=500)
    conversation_id: CleanStr | None = Field(None, max_length=64)
    attached: Attached | None = None


def attached_of(body: WebChatIn) -> dict[str, Any] | None:
    """The files the question went with, to keep with it; 422 when `attached` does not
    describe the message sent (its question must be what the message's text ends with)."""
    if body.attached is None:
        return None
    text = question_text(body.messages)
    question = body.attached.question
    if text is None or not (text == question or text.endswith("\n\n" + question)):
        raise ValidationFailed(
            "attached.question must be the end of the last message, which the user wrote.",
            code="attached_mismatch",
        )
    return body.attached.model_dump()


@router.post("/sessions/{session_id}/chat", dependencies=[CsrfChecked])
async def live_chat(
    raw: RawBody, state: StateDep, user: SignedIn, session_id: SessionId
) -> Response:
    """The page's chat: the conversation so far, streamed back as the model writes; saved in
    the chat named (the question, and the answer as it arrives). Its body is read as the API's
    chat reads it: 413 past the same limit (room for a few images), 422 in sentences."""
    _, body = parse_body(raw, WebChatIn)
    attached = attached_of(body)
    async with state.db.read() as tx:
        session = await chat_session(tx, user_id=user.id, model=None, session_id=session_id)
        if body.conversation_id is not None:
            await conversations.check_room(
                tx,
                body.conversation_id,
                user_id=user.id,
                caps=conversations.caps_of(state.settings),
                adding=question_size(body.messages),
            )
    target = await state.workspace.target_of(session)
    turn = None
    if body.conversation_id is not None:
        turn = state.chat_proxy.saver.begin(
            conversation_id=body.conversation_id,
            session_id=session.id,
            model=target.model,
            messages=body.messages,
            attached=attached,
        )
    images_left_out = 0
    if sees_images(target.model) is False:  # a chat carried on from a model that sees them
        messages, images_left_out = without_earlier_images(body.messages)
        body = body.model_copy(update={"messages": messages})
    request, dropped = chat_request(body, context_tokens=chat_context(target.model))
    events = await state.chat_proxy.open_stream(target, request, turn=turn)
    answer = RelayResponse(events, stall_seconds=state.settings.chat_stall_seconds)
    # the page says that the oldest turns, or earlier images, were left out, and how many
    answer.headers["X-Sizzle-Dropped-Messages"] = str(dropped)
    answer.headers["X-Sizzle-Dropped-Images"] = str(images_left_out)
    return answer


def chat_request(body: WebChatIn, *, context_tokens: int) -> tuple[dict[str, Any], int]:
    """What the page's chat sends the model: the messages (the system prompt first, if the
    chat has one) that fit what the model reads at once, the chat's settings, streamed with
    token counts; and how many of the oldest messages were left out."""
    messages = list(body.messages)
    if body.system_prompt:
        messages.insert(0, {"role": "system", "content": body.system_prompt})
    messages, dropped = fit_history(
        messages, context_tokens=context_tokens, answer_tokens=body.max_tokens
    )
    request: dict[str, Any] = {
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if body.temperature is not None:
        request["temperature"] = body.temperature
    if body.max_tokens is not None:
        request["max_tokens"] = body.max_tokens
    return request, dropped


# --- the Chats page and one chat's page ------------------------------------------------------


@router.get("/chats", response_class=HTMLResponse)
async def chats_page(
    request: Request,
    state: StateDep,
    user: SignedIn,
    paging: PagingDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """My saved chats, most recently used first; `q` searches titles and messages."""
    query = (q or "").strip() or None
    async with state.db.read() as tx:
        rows, total = await conversations.list_conversations(
            tx, user_id=user.id, query=query, limit=paging.limit, offset=paging.offset
        )
    return render(
        request,
        "chats/list.html",
        user=user,
        chats=rows,
        total=total,
        paging=paging,
        q=query or "",
        keep=urlencode({"q": query}) if query else "",
    )


@router.get("/chats/{conversation_id}", response_class=HTMLResponse)
async def chat_page(
    request: Request, state: StateDep, user: SignedIn, conversation_id: IdPath
) -> Response:
    """One saved chat to read, export, rename, delete or carry on."""
    chat = await read_conversation(state, conversation_id, user_id=user.id)
    async with state.db.read() as tx:
        go_on = await carry_on(tx, user_id=user.id, chat_id=chat.id, model=chat.model)
    return render(
        request,
        "chats/view.html",
        user=user,
        chat=chat,
        chat_data=chat.model_dump(mode="json"),
        carry=go_on,
    )


@router.get("/chats/{conversation_id}/data.json")
async def chat_data(state: StateDep, user: SignedIn, conversation_id: IdPath) -> JSONResponse:
    """One chat with its messages, for the live page's script."""
    chat = await read_conversation(state, conversation_id, user_id=user.id)
    return JSONResponse(chat.model_dump(mode="json"))


@router.post("/chats", dependencies=[CsrfChecked], status_code=201)
async def new_chat(body: ConversationIn, state: StateDep, user: SignedIn) -> JSONResponse:
    """A new chat (the live page's script makes one as the first question is sent)."""
    made = await create_conversation(state, body, user_id=user.id)
    return JSONResponse(made.model_dump(mode="json"), status_code=201)


@router.post("/chats/{conversation_id}/settings", dependencies=[CsrfChecked])
async def chat_settings(
    body: ConversationPatch, state: StateDep, user: SignedIn, conversation_id: IdPath
) -> JSONResponse:
    """Rename the chat or change its settings (the live page's script)."""
    changed = await change_conversation(state, conversation_id, body, user_id=user.id)
    return JSONResponse(changed.model_dump(mode="json"))


@router.post("/chats/{conversation_id}/rename", dependencies=[CsrfChecked])
async def rename(
    state: StateDep,
    user: SignedIn,
    conversation_id: IdPath,
    title: Annotated[str, Form(max_length=200)],
) -> Response:
    async with state.db.transaction() as tx:
        await conversations.update(
            tx, conversation_id, user_id=user.id, changes={"title": title}, now=state.clock.now()
        )
    return RedirectResponse(f"/chats/{conversation_id}", status_code=303)


@router.post("/chats/{conversation_id}/delete", dependencies=[CsrfChecked])
async def delete(state: StateDep, user: SignedIn, conversation_id: IdPath) -> Response:
    async with state.db.transaction() as tx:
        await conversations.remove(tx, conversation_id, user_id=user.id)
    return RedirectResponse("/chats", status_code=303)


@router.get("/chats/{conversation_id}/export.md")
async def export_markdown(state: StateDep, user: SignedIn, conversation_id: IdPath) -> Response:
    return await export_response(state, conversation_id, user_id=user.id, kind="markdown")


@router.get("/chats/{conversation_id}/export.json")
async def export_json(state: StateDep, user: SignedIn, conversation_id: IdPath) -> Response:
    return await export_response(state, conversation_id, user_id=user.id, kind="json")
