"""The workspace: which of a user's sessions a chat request goes to, where that session's model
server listens, and what a session's chat traffic has been."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from sizzle.catalog import load_catalog
from sizzle.clock import Clock
from sizzle.db.database import Database
from sizzle.db.models import GpuSession, User
from sizzle.domain.lifecycle import SessionStatus
from sizzle.errors import BadRequest, Conflict, NotFound
from sizzle.providers.base import Provider, SupportsChat, SupportsSsh
from sizzle.providers.registry import serves_chat
from sizzle.services.accounts import get_active_user
from sizzle.services.activity import ActivityRecorder
from sizzle.services.instance_path import model_server_url
from sizzle.services.model_library import model_categories, model_name
from sizzle.services.sessions import LIVE_STATUSES
from sizzle.workload.endpoint import SshEndpoint
from sizzle.workload.tunnel import OLLAMA_PORT, Tunnels

S = SessionStatus
DEMO_PROVIDER = "demo"
DEMO_MESSAGE = (
    "This is a demo session: no model runs behind it, so there is nothing to chat with and "
    "Sizzle will not make answers up. Rent a GPU from a real provider to chat with a model."
)
NO_CHAT_MESSAGE = "This session's GPU runs no model server, so there is nothing to chat with."
NO_MODEL_MESSAGE = "This session was started without a model; create one with a model to chat."
EMBEDDING_MODEL_MESSAGE = (
    "{name} is an embedding model: it turns text into numbers for search and does not chat. "
    "Programs use it through POST /v1/embeddings with an API key."
)
# How long a provider's answer to "where does this instance serve?" is reused.
ADDRESS_TTL_SECONDS = 60.0
NOT_READY_MESSAGE = "the session's model server has no address yet; try again in a moment"


@dataclass(frozen=True)
class ChatTarget:
    """Where one chat request goes: the session, the model name its server knows, the URL,
    and the headers the server wants (an operator's node behind a token)."""

    session_id: str
    model: str
    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkspaceState:
    """What the workspace can offer for a session, in words a user understands."""

    chat_available: bool
    message: str | None
    sees_images: bool | None = None  # None: the library does not know the model


def model_names(name: str) -> set[str]:
    """Every name the same model goes by: `llama3.2` is `llama3.2:latest`, and a library slug
    stands for its Ollama tags."""
    names = {name, name if ":" in name else f"{name}:latest"}
    if name.endswith(":latest"):
        names.add(name.removesuffix(":latest"))
    catalog = load_catalog()
    try:
        names.update(q.ollama_tag for q in catalog.get(name).quantizations)
    except KeyError:
        pass
    return names


def workspace_state(session: GpuSession) -> WorkspaceState:
    if session.provider == DEMO_PROVIDER:
        return WorkspaceState(chat_available=False, message=DEMO_MESSAGE)
    if not session.model:
        return WorkspaceState(chat_available=False, message=NO_MODEL_MESSAGE)
    if session.provider and not serves_chat(session.provider):
        return WorkspaceState(chat_available=False, message=NO_CHAT_MESSAGE)
    if session.status == S.ACTIVE.value:
        if makes_embeddings_only(session.model):
            message = EMBEDDING_MODEL_MESSAGE.format(name=model_name(session.model))
            return WorkspaceState(chat_available=False, message=message)
        return WorkspaceState(
            chat_available=True, message=None, sees_images=sees_images(session.model)
        )
    if SessionStatus(session.status).is_terminal():
        return WorkspaceState(chat_available=False, message="This session has ended.")
    return WorkspaceState(chat_available=False, message=_WAITING.get(session.status))


_WAITING = {
    S.PENDING.value: "The GPU is being found and prepared; chat opens once the session starts.",
    S.PROVISIONING.value: "The GPU is being prepared; chat opens once the session starts.",
    S.READY.value: "The GPU is ready: start the session to chat with its model.",
    S.PAUSED.value: "The session is paused: resume it to chat.",
    S.STOPPING.value: "The session is stopping.",
}


# Built once: building a statement costs more than running it (a chat's hot path).
_MINE = (
    select(GpuSession)
    .join(User, User.id == GpuSession.user_id)
    .where(GpuSession.user_id == bindparam("user_id"), User.is_active.is_(True))
)
_NAMED = _MINE.where(GpuSession.id == bindparam("session_id"))
_RUNNING_MODEL = _MINE.where(
    GpuSession.model.in_(bindparam("models", expanding=True)),
    GpuSession.status.in_(LIVE_STATUSES),
).order_by(GpuSession.created_at.desc())


async def _pick_session(
    tx: AsyncSession, *, user_id: str, model: str | None, session_id: str | None
) -> GpuSession:
    """The session a chat request is for, read together with the account in one query."""
    if not session_id and not model:
        raise NotFound("say which model to chat with: `model`, or an X-Sizzle-Session header")
    if session_id:
        found = await tx.scalars(_NAMED, {"user_id": user_id, "session_id": session_id})
    else:
        models = list(model_names(model or ""))
        found = await tx.scalars(_RUNNING_MODEL, {"user_id": user_id, "models": models})
    candidates = list(found)
    if not candidates:
        await get_active_user(tx, user_id)  # a missing or suspended account says so first
        if session_id:
            raise NotFound("session not found")
        raise NotFound(
            f"none of your sessions runs {model!r}; start one with that model first",
            code="model_not_found",
        )
    active = [s for s in candidates if s.status == S.ACTIVE.value]
    return active[0] if active else candidates[0]  # a live one's state explains the refusal


async def chat_session(
    tx: AsyncSession,
    *,
    user_id: str,
    model: str | None,
    session_id: str | None,
    embeddings: bool = False,
) -> GpuSession:
    """The caller's active session for `model` (or the session named), read in `tx`, to chat
    with (or to ask for `embeddings`); 404 when there is none, 409 when it cannot be used now,
    400 when its model does not do what is asked."""
    session = await _pick_session(tx, user_id=user_id, model=model, session_id=session_id)
    await _require_chat(session)
    if embeddings:
        require_embedding_model(session)
    else:
        require_chat_model(session)
    return session


def makes_embeddings_only(ollama_tag: str) -> bool:
    """Whether the library knows the model as one that makes embeddings and cannot chat."""
    categories = model_categories(ollama_tag) or frozenset()
    return "embedding" in categories and "chat" not in categories


def require_chat_model(session: GpuSession) -> None:
    """400 before the node is asked when the session's model cannot chat (Ollama would answer
    400 too, in its own words)."""
    if session.model and makes_embeddings_only(session.model):
        raise BadRequest(
            EMBEDDING_MODEL_MESSAGE.format(name=model_name(session.model)),
            code="not_a_chat_model",
        )


def sees_images(ollama_tag: str) -> bool | None:
    """Whether the model takes images (the library lists it as a vision model); None when the
    library does not know the model."""
    categories = model_categories(ollama_tag)
    return None if categories is None else "vision" in categories


def has_images(messages: object) -> bool:
    """Whether a chat's messages carry an image part."""
    return isinstance(messages, list) and any(
        isinstance(message, dict)
        and isinstance(message.get("content"), list)
        and any(
            isinstance(part, dict) and part.get("type") == "image_url"
            for part in message["content"]
        )
        for message in messages
    )


def require_vision_for_images(ollama_tag: str, messages: object) -> None:
    """400 before the node is asked when a chat carries an image for a model the library
    knows cannot see images (its server would fail on it, in words nobody understands)."""
    if sees_images(ollama_tag) is False and has_images(messages):
        raise BadRequest(
            f"{model_name(ollama_tag)} cannot see images, so nothing was sent. Send the text "
            "alone, or start a session with a model that sees images (such as Gemma 3 4B).",
            code="model_cannot_see_images",
        )


def require_embedding_model(session: GpuSession) -> None:
    """400 before the node is asked when the library knows the session's model as one that
    makes no embeddings; a model the library does not know is left to its server."""
    categories = model_categories(session.model or "")
    if categories is not None and "embedding" not in categories:
        raise BadRequest(
            f"{model_name(session.model or '')} is a chat model and makes no embeddings; "
            "start a session with an embedding model from the library (such as Nomic Embed "
            "Text) to get embeddings.",
            code="not_an_embedding_model",
        )


async def _require_chat(session: GpuSession) -> None:
    if session.provider == DEMO_PROVIDER:
        raise Conflict(DEMO_MESSAGE, code="demo_session_has_no_model")
    if session.status != S.ACTIVE.value:
        raise Conflict(
            f"session {session.id} is {session.status}; chat needs it to be active"
            + (" (resume it first)" if session.status == S.PAUSED.value else ""),
            code="session_not_active",
        )
    if not session.model:
        raise Conflict(NO_MODEL_MESSAGE, code="session_has_no_model")


class Workspace:
    """Finds chat targets; remembers for a minute where each instance serves.

    An instance reached over SSH (SupportsSsh) is chatted with through the process's tunnel
    pool: the address it hands out is the local end of a forward that is open, never a
    remembered one that may have dropped."""

    def __init__(
        self,
        db: Database,
        providers: dict[str, Provider],
        *,
        tunnels: Tunnels,
        secret_key: str,
        clock: Clock,
        model_port: int = OLLAMA_PORT,
        activity: ActivityRecorder | None = None,
    ) -> None:
        self.db = db
        self.activity = activity  # every chat target found is a use of its session
        self.providers = providers
        self.tunnels = tunnels
        self._secret_key = secret_key
        self._clock = clock
        self.model_port = model_port  # where the model server listens on an instance's loopback
        self._addresses: dict[tuple[str, str], tuple[str, float]] = {}
        self._endpoints: dict[tuple[str, str], tuple[SshEndpoint, float]] = {}

    async def target(
        self, *, user_id: str, model: str | None, session_id: str | None
    ) -> ChatTarget:
        """The caller's active session for `model` (or the session named), ready to chat.
        The account is checked in the same transaction: one database round trip."""
        async with self.db.read() as tx:
            session = await chat_session(tx, user_id=user_id, model=model, session_id=session_id)
        return await self.target_of(session)

    async def target_of(self, session: GpuSession) -> ChatTarget:
        """Where a session that may chat (see `chat_session`) serves: outside any transaction,
        as the provider may be asked."""
        assert session.model is not None  # noqa: S101 - checked by chat_session
        if self.activity is not None:
            self.activity.touch(session.id)  # in memory: nothing is written before the answer
        base_url = await self._address(session)
        provider = self.providers.get(session.provider or "")
        headers: Mapping[str, str] = (
            provider.chat_headers(session.instance_id)
            if isinstance(provider, SupportsChat) and session.instance_id
            else {}
        )
        return ChatTarget(
            session_id=session.id, model=session.model, base_url=base_url, headers=headers
        )

    async def _address(self, session: GpuSession) -> str:
        provider = self.providers.get(session.provider or "")
        if provider is None or not session.instance_id:
            raise Conflict(NO_CHAT_MESSAGE, code="chat_not_supported")
        if isinstance(provider, SupportsSsh):
            return await self._tunnel_address(provider, session)
        if not isinstance(provider, SupportsChat):
            raise Conflict(NO_CHAT_MESSAGE, code="chat_not_supported")
        key = (provider.name, session.instance_id)
        cached = self._addresses.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        url = await provider.chat_base_url(session.instance_id)
        if not url:
            raise Conflict(NOT_READY_MESSAGE, code="chat_not_ready")
        self._addresses[key] = (url, time.monotonic() + ADDRESS_TTL_SECONDS)
        return url

    async def _tunnel_address(self, provider: SupportsSsh, session: GpuSession) -> str:
        """The local end of the session's tunnel to its model server: the open forward as it
        is, else opened (again) with the session's key, read in a short transaction."""
        endpoint = await self.ssh_endpoint(provider, session)
        if endpoint is None:
            raise Conflict(NOT_READY_MESSAGE, code="chat_not_ready")
        try:
            return await model_server_url(
                self.db,
                self.tunnels,
                session.id,
                endpoint,
                port=self.model_port,
                secret=self._secret_key,
                clock=self._clock,
            )
        except Exception:
            self.forget_endpoint(session)
            raise

    async def ssh_endpoint(self, provider: SupportsSsh, session: GpuSession) -> SshEndpoint | None:
        """The SSH address of the session's instance (remembered for a minute, so that chats
        and GPU readings do not ask the provider each time); None while it has none."""
        key = (str(session.provider), str(session.instance_id))
        cached = self._endpoints.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        endpoint = await provider.ssh_endpoint(key[1])
        if endpoint is not None:
            self._endpoints[key] = (endpoint, time.monotonic() + ADDRESS_TTL_SECONDS)
        return endpoint

    def forget_endpoint(self, session: GpuSession) -> None:
        """After a failure there: the instance may have moved since its address was
        remembered, so ask the provider again next time."""
        self._endpoints.pop((str(session.provider), str(session.instance_id)), None)

    async def active_models(self, *, user_id: str) -> list[GpuSession]:
        """The caller's active sessions that run a model, newest first."""
        async with self.db.read() as tx:
            await get_active_user(tx, user_id)
            rows = await tx.scalars(
                select(GpuSession)
                .where(
                    GpuSession.user_id == user_id,
                    GpuSession.status == S.ACTIVE.value,
                    GpuSession.model.is_not(None),
                )
                .order_by(GpuSession.created_at.desc())
            )
            found = [s for s in rows if s.provider != DEMO_PROVIDER]
        if self.activity is not None:  # a client asking what it can chat with is using them
            for session in found:
                self.activity.touch(session.id)
        return found
