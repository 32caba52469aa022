"""What a session reports while it runs: its chat traffic, and its GPU as the hardware says."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncssh
import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.db.models import ChatRequest, GpuSession
from sizzle.domain.lifecycle import SessionStatus
from sizzle.errors import InstanceUnreachable, SizzleError
from sizzle.providers.base import SupportsMetrics, SupportsSsh
from sizzle.services.instance_path import session_private_key
from sizzle.workload.gpu import GPU_QUERY, UnreadableGpuQuery, parse_gpu_query

if TYPE_CHECKING:
    from sizzle.state import AppState

log = structlog.get_logger(__name__)

MEDIAN_WINDOW = 1000  # requests
GPU_QUERY_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class ChatStats:
    requests: int
    succeeded: int
    failed: int
    cancelled: int
    prompt_tokens: int
    completion_tokens: int
    median_time_to_first_token_ms: int | None
    tokens_per_second: float | None


async def chat_stats(tx: AsyncSession, session_id: str) -> ChatStats:
    """A session's chat traffic so far. Tokens per second is output tokens over the time spent
    producing them (from the first token where it was seen); the median time to first token
    is over the latest requests."""
    mine = ChatRequest.session_id == session_id
    ok = ChatRequest.outcome == "ok"
    totals = (
        await tx.execute(
            select(
                func.count(),
                func.count().filter(ok),
                func.count().filter(ChatRequest.outcome.in_(("failed", "upstream_error"))),
                func.count().filter(ChatRequest.outcome == "cancelled"),
                func.coalesce(func.sum(ChatRequest.prompt_tokens), 0),
                func.coalesce(func.sum(ChatRequest.completion_tokens), 0),
            ).where(mine)
        )
    ).one()
    generating = (
        await tx.execute(
            select(
                func.coalesce(func.sum(ChatRequest.completion_tokens), 0),
                func.coalesce(
                    func.sum(
                        ChatRequest.duration_ms
                        - func.coalesce(ChatRequest.time_to_first_token_ms, 0)
                    ),
                    0,
                ),
            ).where(mine, ok, ChatRequest.completion_tokens > 0)
        )
    ).one()
    first_token = [
        ms
        for ms in await tx.scalars(
            select(ChatRequest.time_to_first_token_ms)
            .where(mine, ChatRequest.time_to_first_token_ms.is_not(None))
            .order_by(ChatRequest.id.desc())
            .limit(MEDIAN_WINDOW)
        )
        if ms is not None
    ]
    generated, generating_ms = int(generating[0] or 0), int(generating[1] or 0)
    return ChatStats(
        requests=totals[0],
        succeeded=totals[1],
        failed=totals[2],
        cancelled=totals[3],
        prompt_tokens=int(totals[4] or 0),
        completion_tokens=int(totals[5] or 0),
        median_time_to_first_token_ms=(
            round(statistics.median(first_token)) if first_token else None
        ),
        tokens_per_second=(
            round(generated * 1000 / generating_ms, 1) if generating_ms > 0 else None
        ),
    )


async def gpu_reading(state: AppState, session: GpuSession) -> dict[str, Any] | None:
    """The GPU as its provider reads it now, for a live session on a provider that can tell,
    or as the driver reads it on an instance reached over SSH (`nvidia-smi`); None otherwise.
    Never an estimate."""
    provider = state.providers.get(session.provider or "")
    live = SessionStatus(session.status).is_live()
    if not live or not session.instance_id or provider is None:
        return None
    try:
        if isinstance(provider, SupportsMetrics):
            return await provider.metrics(session.instance_id)
        if isinstance(provider, SupportsSsh):
            return await _read_over_ssh(state, provider, session)
    except SizzleError as exc:
        log.warning("session.metrics_failed", session_id=session.id, error=exc.message)
        return {"gpus": None, "error": exc.message}
    return None


async def _read_over_ssh(
    state: AppState, provider: SupportsSsh, session: GpuSession
) -> dict[str, Any] | None:
    """`nvidia-smi` on the instance, through the session's SSH connection (opened with the
    session's key if this process has none open); None until the instance answers SSH."""
    endpoint = await state.workspace.ssh_endpoint(provider, session)
    if endpoint is None:
        return None

    async def key() -> asyncssh.SSHKey:  # read only when no connection is open
        secret = state.settings.resolved_secret_key
        return await session_private_key(state.db, session.id, secret=secret, clock=state.clock)

    try:
        answer = await state.tunnels.run(
            session.id, endpoint, key, GPU_QUERY, timeout=GPU_QUERY_TIMEOUT_SECONDS
        )
    except InstanceUnreachable:  # it may have moved: ask the provider for its address again
        state.workspace.forget_endpoint(session)
        raise
    try:
        return {"gpus": parse_gpu_query(answer), "error": None}
    except UnreadableGpuQuery as exc:
        return {"gpus": None, "error": str(exc)}
