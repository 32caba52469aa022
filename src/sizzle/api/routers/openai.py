"""The OpenAI-compatible workspace API: chat with the model of one of my active sessions.

`POST /v1/chat/completions` picks the caller's active session running the request's `model`
(or the session an `X-Sizzle-Session` header names) and relays the request to that session's
Ollama; `GET /v1/models` lists the models of the caller's active sessions. Errors keep
Sizzle's shape, `{"error": {"code", "message"}}`, which OpenAI clients read as `error.message`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from sizzle.api.deps import InferenceUserId, StateDep
from sizzle.api.openapi import error_responses
from sizzle.api.relay import RelayResponse
from sizzle.errors import PayloadTooLarge, ValidationFailed
from sizzle.safe_json import parse_json

router = APIRouter(prefix="/v1", tags=["workspace (OpenAI-compatible)"])

MAX_BODY_BYTES = 8 * 1024 * 1024  # room for a few images in base64


class ChatCompletionIn(BaseModel):
    """What Sizzle checks of a chat request; every other field goes to the model as sent."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr | None = Field(None, max_length=200)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: StrictBool = False


async def _read_body(request: Request) -> dict[str, Any]:
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the request is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    body = parse_json(bytes(raw))
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
    request: Request,
    user_id: InferenceUserId,
    state: StateDep,
    x_sizzle_session: Annotated[str | None, Header(max_length=64)] = None,
) -> Any:
    body = await _read_body(request)
    target = await state.workspace.target(
        user_id=user_id, model=body.get("model"), session_id=x_sizzle_session
    )
    if not body.get("stream"):
        return await state.chat_proxy.complete(target, body)
    events = await state.chat_proxy.open_stream(target, body)
    return RelayResponse(events, stall_seconds=state.settings.chat_stall_seconds)


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
