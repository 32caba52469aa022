"""The OpenAI-compatible workspace API: chat with the model of one of my active sessions.

`POST /v1/chat/completions` picks the caller's active session running the request's `model`
(or the session an `X-Sizzle-Session` header names) and relays the request to that session's
Ollama (with `X-Sizzle-Conversation`, the question and the answer are saved in that chat);
`GET /v1/models` lists the models of the caller's active sessions. Errors keep
Sizzle's shape, `{"error": {"code", "message"}}`, which OpenAI clients read as `error.message`.

A chat checks the caller and picks the session in one read transaction, which ends before the
node is asked (`ChatAnswer`): a model that takes minutes to load holds no database connection.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Request, Security
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError
from starlette.types import Receive, Scope, Send

from sizzle.api import validation_text
from sizzle.api.deps import InferenceUserId, StateDep, app_state, get_credential, read_caller
from sizzle.api.openapi import error_responses
from sizzle.api.relay import RelayResponse
from sizzle.db.models import GpuSession
from sizzle.errors import PayloadTooLarge, ValidationFailed
from sizzle.safe_json import parse_json
from sizzle.services import conversations, embeddings
from sizzle.services.chat_saving import question_size
from sizzle.services.embeddings import EmbeddingsIn
from sizzle.services.workspace import chat_session
from sizzle.state import AppState

router = APIRouter(prefix="/v1", tags=["workspace (OpenAI-compatible)"])

MAX_BODY_BYTES = 8 * 1024 * 1024  # room for a few images in base64


class ChatCompletionIn(BaseModel):
    """What Sizzle checks of a chat request; every other field goes to the model as sent."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr | None = Field(None, max_length=200)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: StrictBool = False


Checked = TypeVar("Checked", bound=BaseModel)

INFERENCE_SCOPES = ["inference"]
# What the caller presented, for a route that checks it in its own read transaction
# (`read_caller`) with these scopes; declared here too, so the docs and the authorization
# matrix see them.
InferenceCredential = Annotated[str, Security(get_credential, scopes=INFERENCE_SCOPES)]


async def read_raw_body(request: Request) -> bytes:
    """The body, read before the read transaction begins (a slow upload holds no connection);
    413 past the limit."""
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"The request is over {MAX_BODY_BYTES // (1024 * 1024)} MB, the most a chat "
                "takes: send fewer or smaller images, or a shorter conversation."
            )
    return bytes(raw)


RawBody = Annotated[bytes, Depends(read_raw_body)]  # first: read before the transaction
SessionHeader = Annotated[str | None, Header(max_length=64)]  # X-Sizzle-Session


def parse_body(raw: bytes, schema: type[Checked]) -> tuple[dict[str, Any], Checked]:
    """The body as sent, and as `schema` reads it; 422 with sentences when it does not fit."""
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ValidationFailed("The request body must be a JSON object.")
    try:
        checked = schema.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(validation_text.summary(exc.errors())) from None
    if "\x00" in (body.get("model") or ""):
        raise ValidationFailed('The field "model" must not contain NUL.')
    return body, checked


def _json_body(schema: type[BaseModel]) -> dict[str, Any]:
    """The request body for the docs: these routes read their bodies themselves."""
    content = {"application/json": {"schema": schema.model_json_schema()}}
    return {"requestBody": {"required": True, "content": content}}


async def _caller_session(
    state: AppState,
    raw: bytes,
    credential: str,
    session_header: str | None,
    schema: type[Checked],
    *,
    embeddings: bool = False,
    conversation_id: str | None = None,
) -> tuple[dict[str, Any], Checked, GpuSession]:
    """The body (as sent and as checked) and the caller's session it is for, read in one
    read transaction that ends before the node is asked; and, if named, the caller's saved
    chat checked to have room for the exchange."""
    async with state.db.read() as tx:
        user = await read_caller(state, tx, credential, INFERENCE_SCOPES)
        body, checked = parse_body(raw, schema)  # after the caller: a stranger learns nothing
        session = await chat_session(
            tx,
            user_id=user.id,
            model=body.get("model"),
            session_id=session_header,
            embeddings=embeddings,
        )
        if conversation_id is not None:
            if "\x00" in conversation_id:
                raise ValidationFailed("X-Sizzle-Conversation must not contain NUL.")
            await conversations.check_room(
                tx,
                conversation_id,
                user_id=user.id,
                caps=conversations.caps_of(state.settings),
                adding=question_size(body["messages"]),
            )
    return body, checked, session


@router.post(
    "/chat/completions",
    summary="Chat with the model of one of my active sessions (OpenAI-compatible)",
    responses={
        200: {"content": {"text/event-stream": {}}},
        **error_responses(404, 409, 413, 502, 503, 504),
    },
    openapi_extra=_json_body(ChatCompletionIn),
)
async def chat_completions(
    raw: RawBody,
    credential: InferenceCredential,
    request: Request,
    x_sizzle_session: SessionHeader = None,
    x_sizzle_conversation: Annotated[
        str | None, Header(max_length=64, description="A saved chat of mine to save this in.")
    ] = None,
) -> Any:
    state = app_state(request)
    body, _, session = await _caller_session(
        state,
        raw,
        credential,
        x_sizzle_session,
        ChatCompletionIn,
        conversation_id=x_sizzle_conversation,
    )
    return ChatAnswer(state, session, body, conversation_id=x_sizzle_conversation)


class ChatAnswer(Response):
    """The node's answer, asked for when the response is sent: after the handler returned and
    its read transaction ended. A refusal before the answer starts is raised here and still
    answered with its own status by the app's error handlers."""

    def __init__(
        self,
        state: AppState,
        session: GpuSession,
        body: dict[str, Any],
        *,
        conversation_id: str | None = None,
    ) -> None:
        super().__init__()
        self.state, self.session, self.chat = state, session, body
        self.conversation_id = conversation_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = await self.state.workspace.target_of(self.session)
        proxy = self.state.chat_proxy
        turn = None
        if self.conversation_id is not None:
            turn = proxy.saver.begin(
                conversation_id=self.conversation_id,
                session_id=target.session_id,
                model=target.model,
                messages=self.chat["messages"],
            )
        answer: Response
        if self.chat.get("stream"):
            events = await proxy.open_stream(target, self.chat, turn=turn)
            answer = RelayResponse(events, stall_seconds=self.state.settings.chat_stall_seconds)
        else:
            answer = JSONResponse(await proxy.complete(target, self.chat, turn=turn))
        await answer(scope, receive, send)


@router.post(
    "/embeddings",
    summary="Embeddings from the model of one of my active sessions (OpenAI-compatible)",
    responses=error_responses(400, 404, 409, 413, 502, 503, 504),
    openapi_extra=_json_body(EmbeddingsIn),
)
async def create_embeddings(
    raw: RawBody,
    credential: InferenceCredential,
    request: Request,
    x_sizzle_session: SessionHeader = None,
) -> Any:
    """The vectors of a text or a list of texts, from a session running an embedding model
    (the library's "embedding" models). Counted on the session like a chat."""
    state = app_state(request)
    _, asked, session = await _caller_session(
        state, raw, credential, x_sizzle_session, EmbeddingsIn, embeddings=True
    )
    # the read transaction has ended: a model loading for minutes holds no connection
    target = await state.workspace.target_of(session)
    return JSONResponse(await embeddings.embed(state.chat_proxy, target, asked))


class ModelEntry(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str = "sizzle"
    session_id: str


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelEntry]


@router.get("/models", response_model=ModelList, summary="The models of my active sessions")
async def list_models(user_id: InferenceUserId, state: StateDep) -> ModelList:
    sessions = await state.workspace.active_models(user_id=user_id)
    return ModelList(
        data=[
            ModelEntry(
                id=session.model or "",
                created=int(session.created_at.timestamp()),
                session_id=session.id,
            )
            for session in sessions
        ]
    )
