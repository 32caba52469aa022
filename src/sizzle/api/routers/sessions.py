"""GPU sessions: create, list, read, and the lifecycle actions."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, status
from fastapi.responses import Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, Field

from sizzle.api.deps import (
    OwnSessionReader,
    PagingDep,
    ReadTxDep,
    SessionsReader,
    SessionsReaderNoTx,
    SessionsWriter,
    StateDep,
    app_state,
)
from sizzle.api.events import session_event, session_stream
from sizzle.api.openapi import error_responses
from sizzle.api.schemas import (
    ChatStatsOut,
    Page,
    SessionCreateIn,
    SessionMetricsOut,
    SessionOut,
    refuse_nul,
)
from sizzle.api.views import session_out
from sizzle.clock import to_ms
from sizzle.db.models import User
from sizzle.domain.idle import busy_gpu, check_idle_minutes, default_idle_minutes
from sizzle.domain.limits import LimitError, parse_usd_amount
from sizzle.errors import ValidationFailed
from sizzle.logging import log_session_id
from sizzle.services import (
    activity,
    idempotency,
    model_library,
    session_metrics,
    sessions,
    ssh_keys,
)
from sizzle.state import AppState

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])
SessionId = Annotated[str, Path(), AfterValidator(refuse_nul), AfterValidator(log_session_id)]


async def _read(state: AppState, session_id: str, user: User) -> SessionOut:
    """The session as it is after a lifecycle action, read in a transaction of its own."""
    async with state.db.read() as tx:
        session = await sessions.get_session(tx, session_id, user_id=user.id)
    return session_out(session, state.clock.now(), for_admin=user.is_admin)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionOut,
    responses={
        200: {"description": "The session an earlier request with this Idempotency-Key made."},
        **error_responses(402, 409, 422, 503),
    },
)
async def create(
    body: SessionCreateIn,
    user: SessionsWriter,
    state: StateDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Any unique text (a UUID): sending the same key and body again within "
            "24 hours answers the session already made (200) instead of making another; the "
            "same key with another body is a 422.",
        ),
    ] = None,
) -> SessionOut:
    """A pending session. A `model` is checked against the library: one that cannot fit the
    tier is a 422 naming the smallest tier that fits; one the library does not know is taken
    as an Ollama tag, with a warning. Limits the page would refuse are refused here too (422,
    `invalid_limit`, saying why). `idle_minutes` left out is the server's default; null is
    never."""
    tier = sessions.find_tier(body.tier)
    chosen = model_library.choose_session_model(body.model, tier) if body.model else None
    cap = spend_cap_of(body)
    idle = asked_idle_minutes(body, state)
    launched = await sessions.launch_session(
        state.db,
        state.orchestrator,
        user_id=user.id,
        tier_name=tier.name,
        model=chosen.ollama_tag if chosen else None,
        max_minutes=body.max_minutes,
        spend_cap_micros=cap,
        idle_minutes=idle,
        idempotency_key=idempotency.check_key(idempotency_key) if idempotency_key else None,
        now=state.clock.now(),
        lab_tiers=state.settings.lab.tiers,
    )
    if launched.replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    else:
        state.jobs.poke()
    return session_out(
        launched.session,
        state.clock.now(),
        for_admin=user.is_admin,
        warnings=list(chosen.warnings) if chosen else None,
    )


def spend_cap_of(body: SessionCreateIn) -> int | None:
    """The body's spending cap in micro-dollars; 422 `invalid_limit` if it is no amount."""
    try:
        return parse_usd_amount(body.spend_cap_usd) if body.spend_cap_usd is not None else None
    except LimitError as exc:
        raise ValidationFailed(
            exc.message, code="invalid_limit", details={"field": "spend_cap_usd"}
        ) from None


def asked_idle_minutes(body: SessionCreateIn, state: AppState) -> int | None:
    """The idle limit asked for (null: never), or the server's default when left out."""
    default = state.settings.idle_minutes
    if "idle_minutes" not in body.model_fields_set:
        return default_idle_minutes(default)
    try:
        return check_idle_minutes(body.idle_minutes, default_minutes=default)
    except LimitError as exc:
        raise ValidationFailed(
            exc.message, code="invalid_limit", details={"field": "idle_minutes"}
        ) from None


@router.get("", response_model=Page[SessionOut])
async def list_mine(
    user: SessionsReader, state: StateDep, tx: ReadTxDep, paging: PagingDep
) -> Page[SessionOut]:
    rows, total = await sessions.list_sessions(
        tx, user_id=user.id, limit=paging.limit, offset=paging.offset
    )
    now = state.clock.now()
    return Page(items=[session_out(s, now, for_admin=user.is_admin) for s in rows], total=total)


@router.get("/{session_id}", response_model=SessionOut)
async def read(session_id: SessionId, own: OwnSessionReader, request: Request) -> Response:
    """One of my sessions, read with me in one read transaction and one statement."""
    out = session_out(own.session, app_state(request).clock.now(), for_admin=own.user.is_admin)
    # as FastAPI would answer it, without validating again the model just built
    return Response(out.model_dump_json(), media_type="application/json")


@router.post("/{session_id}/start", response_model=SessionOut, responses=error_responses(402, 409))
async def start(session_id: SessionId, user: SessionsWriter, state: StateDep) -> SessionOut:
    await sessions.start_session(state.db, session_id=session_id, user=user, now=state.clock.now())
    return await _read(state, session_id, user)


@router.post("/{session_id}/pause", response_model=SessionOut, responses=error_responses(409, 503))
async def pause(session_id: SessionId, user: SessionsWriter, state: StateDep) -> SessionOut:
    await sessions.pause_session(
        state.db, state.providers, session_id=session_id, user=user, now=state.clock.now()
    )
    return await _read(state, session_id, user)


@router.post(
    "/{session_id}/resume",
    response_model=SessionOut,
    responses=error_responses(402, 409, 503),
)
async def resume(session_id: SessionId, user: SessionsWriter, state: StateDep) -> SessionOut:
    await sessions.resume_session(
        state.db, state.providers, session_id=session_id, user=user, now=state.clock.now()
    )
    return await _read(state, session_id, user)


@router.post("/{session_id}/stop", response_model=SessionOut, responses=error_responses(409))
async def stop(session_id: SessionId, user: SessionsWriter, state: StateDep) -> SessionOut:
    await sessions.stop_session(
        state.db, state.providers, session_id=session_id, user=user, now=state.clock.now()
    )
    return await _read(state, session_id, user)


@router.post("/{session_id}/keep-alive", response_model=SessionOut, responses=error_responses(409))
async def keep_alive(session_id: SessionId, user: SessionsWriter, state: StateDep) -> SessionOut:
    """ "Keep it running": count the active session as used now, which moves its idle stop
    (`idle_stop_at`) a whole idle limit away. 409 when it is not running."""
    await activity.keep_alive(
        state.db, session_id=session_id, user=user, now_ms=to_ms(state.clock.now())
    )
    return await _read(state, session_id, user)


@router.get("/{session_id}/metrics", response_model=SessionMetricsOut)
async def metrics(
    session_id: SessionId, user: SessionsReaderNoTx, state: StateDep
) -> SessionMetricsOut:
    """The session's chat traffic so far, and its GPU as read now."""
    return await metrics_of(state, session_id, user_id=user.id)


async def metrics_of(state: AppState, session_id: str, *, user_id: str) -> SessionMetricsOut:
    """One of the user's sessions: its chat counts and its GPU now (the API's and the page's)."""
    async with state.db.read() as tx:
        session = await sessions.get_session(tx, session_id, user_id=user_id)
        chat = await session_metrics.chat_stats(tx, session_id)
    gpu = await session_metrics.gpu_reading(state, session)
    if busy_gpu(gpu, state.settings.idle_gpu_percent):
        state.activity.touch(session_id)  # a busy GPU is a session in use (idle auto-stop)
    return SessionMetricsOut(
        session_id=session_id, chat=ChatStatsOut(**dataclasses.asdict(chat)), gpu=gpu
    )


@router.get(
    "/{session_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    session_id: SessionId, user: SessionsReader, state: StateDep, tx: ReadTxDep
) -> StreamingResponse:
    """Server-sent events: an `event: session` with the session JSON on every change (and at
    least every 15 s), until the session has ended. An account may hold
    `SIZZLE_MAX_STREAMS_PER_USER` streams open at once; more is a 429."""
    return await session_stream(
        state, session_id, user, render=session_event(for_admin=user.is_admin), tx=tx
    )


class SshKeyOnMachineOut(BaseModel):
    fingerprint: str
    name: str | None = Field(description="None: a key removed since the machine started.")


class SessionSshOut(BaseModel):
    session_id: str
    host: str
    port: int
    username: str = Field(description="The user to log in as (root on Vast and RunPod).")
    command: str = Field(description="The exact command: `ssh -p PORT USER@HOST`.")
    vscode_uri: str = Field(description="Opens the machine in VS Code (Remote - SSH).")
    keys: list[SshKeyOnMachineOut] = Field(description="My SSH keys this machine has.")


@router.get("/{session_id}/ssh", response_model=SessionSshOut, responses=error_responses(409))
async def ssh(session_id: SessionId, user: SessionsReaderNoTx, state: StateDep) -> SessionSshOut:
    """How to log in to the session's machine with my own SSH key: while the session is active
    on a provider reached over SSH and the machine got one of my keys (409 saying why not
    otherwise, `ssh_not_ready` while its address is not known yet)."""
    return await ssh_of(state, session_id, user_id=user.id)


async def ssh_of(state: AppState, session_id: str, *, user_id: str) -> SessionSshOut:
    """The API's and the live page's answer."""
    access = await ssh_keys.connect_info(
        state.db, state.providers, state.workspace, session_id, user_id=user_id
    )
    connect = access.connect
    return SessionSshOut(
        session_id=session_id,
        host=connect.host,
        port=connect.port,
        username=connect.username,
        command=connect.command,
        vscode_uri=connect.vscode_uri,
        keys=[SshKeyOnMachineOut(fingerprint=k.fingerprint, name=k.name) for k in access.keys],
    )
