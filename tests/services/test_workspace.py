"""What the workspace offers for a session, and the names a model goes by."""

from __future__ import annotations

import pytest

from sizzle.db.models import GpuSession
from sizzle.services.workspace import model_names, workspace_state


def _session(
    *, provider: str | None, status: str = "active", model: str | None = "x:1b"
) -> GpuSession:
    return GpuSession(
        id="s1", user_id="u1", tier="starter", provider=provider, status=status, model=model
    )


def test_a_model_goes_by_its_tag_its_bare_name_and_its_library_slug() -> None:
    assert model_names("llama3.2") == {"llama3.2", "llama3.2:latest"}
    assert model_names("llama3.2:latest") == {"llama3.2", "llama3.2:latest"}
    assert model_names("llama3.1-8b") >= {"llama3.1-8b", "llama3.1:8b", "llama3.1:8b-instruct-q8_0"}


@pytest.mark.parametrize("provider", ["ollama", "runpod", "vast", "lambda"])
def test_an_active_session_with_a_model_server_can_chat(provider: str) -> None:
    state = workspace_state(_session(provider=provider))
    assert state.chat_available and state.message is None


@pytest.mark.parametrize(
    ("provider", "status", "model", "says"),
    [
        ("demo", "active", "x:1b", "demo session"),
        ("a-plugin-gone-since", "active", "x:1b", "no model server"),
        ("ollama", "active", None, "without a model"),
        ("ollama", "paused", "x:1b", "resume"),
        ("ollama", "ready", "x:1b", "start the session"),
        ("ollama", "terminated", "x:1b", "ended"),
        (None, "pending", "x:1b", "prepared"),
    ],
)
def test_otherwise_it_says_why_not(
    provider: str | None, status: str, model: str | None, says: str
) -> None:
    state = workspace_state(_session(provider=provider, status=status, model=model))
    assert not state.chat_available
    assert state.message is not None and says in state.message
