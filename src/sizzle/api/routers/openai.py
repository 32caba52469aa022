"""The OpenAI-compatible workspace API: chat with the model of one of my active sessions.

`POST /v1/chat/completions` picks the caller's active session running the request's `model`
(or the session an `X-Sizzle-Session` header names) and relays the request to that session's
Ollama; `GET /v1/models` lists the models of the caller's active sessions. Errors keep
Sizzle's shape, `{"error": {"code", "message"}}`, which OpenAI clients read as `error.message`.

A chat checks the caller and picks the session in one read transaction, which ends before the
node is asked (`ChatAnswer`): a model that takes minutes to load holds no database connection.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Security
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError
from starlette.types import Receive, Scope, Send

from sizzle.api.deps import InferenceUserId, StateDep, app_state, get_credential, read_caller
from sizzle.api.openapi import error_responses
from sizzle.api.relay import RelayResponse
from sizzle.db.models import GpuSession
from sizzle.errors import PayloadTooLarge, ValidationFailed
from sizzle.safe_json import parse_json
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
            raise PayloadTooLarge(f"the request is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    return bytes(raw)


def _parse_body(raw: bytes) -> dict[str, Any]:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    try:
        ChatCompletionIn.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValidationFailed(problems) from None
    if "\x00" in (body.get("model") or ""):
        raise ValidationFailed("model: must not contain NUL")
    return body


@router.post(
    "/chat/completions",
    summary="Chat with the model of one of my active sessions (OpenAI-compatible)",
    responses={
        200: {"content": {"text/event-stream": {}}},
        **error_responses(404, 409, 413, 502, 503, 504),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ChatCompletionIn.model_json_schema()}},
        }
    },
)
async def chat_completions(
    raw: Annotated[bytes, Depends(read_raw_body)],  # first: before the transaction
    credential: InferenceCredential,
    request: Request,
    x_sizzle_session: Annotated[str | None, Header(max_length=64)] = None,
) -> Any:
    state = app_state(request)
    async with state.db.read() as tx:
        user = await read_caller(state, tx, credential, INFERENCE_SCOPES)
        body = _parse_body(raw)  # after the caller: a stranger learns nothing from a 422
        session = await chat_session(
            tx, user_id=user.id, model=body.get("model"), session_id=x_sizzle_session
        )
    return ChatAnswer(state, session, body)


class ChatAnswer(Response):
    """The node's answer, asked for when the response is sent: after the handler returned and
    its read transaction ended. A refusal before the answer starts is raised here and still
    answered with its own status by the app's error handlers."""

    def __init__(self, state: AppState, session: GpuSession, body: dict[str, Any]) -> None:
        super().__init__()
        self.state, self.session, self.chat = state, session, body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = await self.state.workspace.target_of(self.session)
        answer: Response
        if self.chat.get("stream"):
            events = await self.state.chat_proxy.open_stream(target, self.chat)
            answer = RelayResponse(events, stall_seconds=self.state.settings.chat_stall_seconds)
        else:
            answer = JSONResponse(await self.state.chat_proxy.complete(target, self.chat))
        await answer(scope, receive, send)


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
