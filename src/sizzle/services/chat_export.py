"""A saved chat exported: as JSON-ready data (the chat's own export, the account export) and
as a Markdown document that says in words what went with each question."""

from __future__ import annotations

import json
from typing import Any

from sizzle.db.models import Conversation, ConversationMessage
from sizzle.domain.images import describe, image_url


def message_data(message: ConversationMessage) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "model": message.model,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "created_at": message.created_at.isoformat(),
        "parts": message.parts,
        "attached": message.attached,
    }


def conversation_data(row: Conversation, messages: list[ConversationMessage]) -> dict[str, Any]:
    """The conversation and its messages as JSON-ready data (the export, the account export)."""
    return {
        "id": row.id,
        "title": row.title,
        "model": row.model,
        "session_id": row.session_id,
        "system_prompt": row.system_prompt,
        "temperature": row.temperature,
        "max_tokens": row.max_tokens,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "messages": [message_data(m) for m in messages],
    }


def as_json(row: Conversation, messages: list[ConversationMessage]) -> str:
    return json.dumps(conversation_data(row, messages), indent=2, ensure_ascii=False) + "\n"


_SPEAKERS = {"user": "You", "assistant": "Assistant", "system": "System"}
_ENDINGS = {
    "streaming": "(the answer was still being written when this was saved)",
    "stopped": "(stopped before the end)",
    "failed": "(the answer failed here)",
}


def as_markdown(row: Conversation, messages: list[ConversationMessage]) -> str:
    """The conversation as a Markdown document: the title, then each message under its
    speaker. Message text is kept as written (it is Markdown already)."""
    lines = [f"# {' '.join(row.title.split())}", ""]
    about = [f"Saved {row.created_at:%Y-%m-%d %H:%M} UTC"]
    if row.model:
        about.append(f"model {row.model}")
    lines += [" · ".join(about), ""]
    if row.system_prompt:
        lines += ["## System prompt", "", row.system_prompt, ""]
    for message in messages:
        lines += [f"## {_SPEAKERS.get(message.role, message.role)}", "", *_markdown_body(message)]
        if message.status in _ENDINGS:
            lines += [f"_{_ENDINGS[message.status]}_", ""]
    return "\n".join(lines)


def _markdown_body(message: ConversationMessage) -> list[str]:
    """A message's lines: what went with a question in words (a note for each file and image,
    not a document's text again nor a picture's base64), then its text as written."""
    notes = [f"[file: {note}]" for note in _file_notes(message)]
    notes += [f"[{describe(url)}]" for url in map(image_url, message.parts or []) if url]
    text = (message.attached or {}).get("question", message.content)
    return [*notes, "", text, ""] if notes else [message.content, ""]


def _file_notes(message: ConversationMessage) -> list[str]:
    files = (message.attached or {}).get("files") or []
    return [f["note"] for f in files if f.get("kind") != "image"]


def export_filename(row: Conversation, extension: str) -> str:
    """A safe file name for a download: letters, digits and dashes of the title."""
    words = "".join(c if c.isascii() and c.isalnum() else " " for c in row.title.lower()).split()
    stem = "-".join(words)[:60].strip("-") or "chat"
    return f"{stem}.{extension}"
