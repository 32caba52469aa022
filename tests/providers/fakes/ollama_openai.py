"""What the fake Ollama node checks and makes on its OpenAI-compatible routes, as Ollama does
(openai/openai.go, middleware/openai.go, server/routes.go):

- chat messages: `content` is a string or a list of parts; a part is `{"type": "text",
  "text"}` or `{"type": "image_url", "image_url": {"url"} or a string}`, and an image is a data
  URL of a JPEG, PNG or WebP (or `data:;base64,`) in standard base64; anything else is a 400
  ("invalid image input", "invalid message format");
- `/v1/embeddings`: `input` is a text or a non-empty list of texts ("invalid input", "invalid
  input type"), `encoding_format` is float or base64; each vector has length 1, and a
  `dimensions` below the model's length keeps that many numbers, scaled back to length 1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import struct
from typing import Any

IMAGE_PREFIXES = tuple(f"data:image/{kind};base64," for kind in ("jpeg", "jpg", "png", "webp")) + (
    "data:;base64,",
)


class Refused(Exception):
    """A request Ollama refuses, with its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def openai_error(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def read_messages(messages: list[dict[str, Any]]) -> tuple[str, list[bytes]]:
    """The messages' text (joined) and images (decoded), or Refused as Ollama refuses."""
    texts: list[str] = []
    images: list[bytes] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                _read_part(part, texts, images)
        elif not message.get("tool_calls"):
            raise Refused(400, f"invalid message content type: {type(content).__name__}")
    return "\n".join(texts), images


def _read_part(part: Any, texts: list[str], images: list[bytes]) -> None:
    if not isinstance(part, dict):
        raise Refused(400, "invalid message format")
    if part.get("type") == "text":
        if not isinstance(part.get("text"), str):
            raise Refused(400, "invalid message format")
        texts.append(part["text"])
        return
    if part.get("type") != "image_url":
        raise Refused(400, "invalid message format")
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise Refused(400, "invalid message format")
    prefix = next((p for p in IMAGE_PREFIXES if url.startswith(p)), None)
    if prefix is None:
        raise Refused(400, "invalid image input")
    try:
        images.append(base64.b64decode(url[len(prefix) :], validate=True))
    except (binascii.Error, ValueError):
        raise Refused(400, "invalid message format") from None


def read_embedding_input(body: dict[str, Any]) -> list[str]:
    """The texts to embed, or Refused as Ollama refuses."""
    encoding = body.get("encoding_format")
    if encoding and str(encoding).lower() not in ("float", "base64"):
        raise Refused(
            400,
            f"Invalid value for 'encoding_format' = {encoding}. "
            "Supported values: ['float', 'base64'].",
        )
    texts = body.get("input")
    if texts == "":
        return [""]
    if texts is None or texts == []:
        raise Refused(400, "invalid input")
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, list) and all(isinstance(t, str) for t in texts):
        return texts
    raise Refused(400, "invalid input type")


def vector(text: str, *, length: int, dimensions: int | None) -> list[float]:
    """A made-up embedding of `text`: the same text always gives the same vector."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [digest[i % len(digest)] - 127.5 for i in range(length)]
    if dimensions and 0 < dimensions < length:
        raw = raw[:dimensions]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


def as_base64(numbers: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(numbers)}f", *numbers)).decode()
