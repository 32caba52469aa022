"""Fitting a chat's history into what a model can read at once: the oldest turns are left out
first; the system prompt and the newest message always go."""

from __future__ import annotations

import math
from typing import Any

CHARS_PER_TOKEN = 3  # a cautious estimate (English runs near 4): better one turn too few
TOKENS_PER_MESSAGE = 4  # the role and separators each message costs
ANSWER_ROOM = 1024  # tokens kept free for the answer when the chat sets no longest answer


def message_tokens(message: dict[str, Any]) -> int:
    """About how many tokens a message takes (its text; an image counts as a short text)."""
    content = message.get("content")
    if isinstance(content, list):
        text = " ".join(p.get("text") or "" for p in content if isinstance(p, dict))
        text += " " * 1000 * sum(1 for p in content if isinstance(p, dict) and "image_url" in p)
    else:
        text = content if isinstance(content, str) else ""
    return math.ceil(len(text) / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE


def fit_history(
    messages: list[dict[str, Any]], *, context_tokens: int, answer_tokens: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The messages that fit `context_tokens` with room for the answer, and how many of the
    oldest were left out. System messages and the last message are always kept."""
    room = context_tokens - min(answer_tokens or ANSWER_ROOM, context_tokens // 2)
    kept = list(messages)
    dropped = 0
    total = sum(message_tokens(m) for m in kept)
    while total > room:
        oldest = next((i for i, m in enumerate(kept[:-1]) if m.get("role") != "system"), None)
        if oldest is None:
            break  # only what must go is left: the model says if it is too long
        total -= message_tokens(kept.pop(oldest))
        dropped += 1
    return kept, dropped
