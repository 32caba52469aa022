"""Images kept with a saved chat: which image parts may be kept and shown (inline pictures in
one of four formats, never an address to fetch), and what one is, in words, for a document
that cannot hold the picture itself ("[image: 1024×768 JPEG]")."""

from __future__ import annotations

import base64
import binascii
import re
import struct
from typing import Any

# Only an inline picture is kept and shown: an address would be fetched by every reader's
# browser (a tracker), and an SVG or HTML "image" can carry script.
SAFE_IMAGE_URL = re.compile(r"data:image/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/]*={0,2}")
_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP", "gif": "GIF"}
_HEAD_BYTES = 64 * 1024  # enough of a file for its size (a JPEG's frame header comes late)


def image_url(part: object) -> str | None:
    """The URL of an OpenAI image part (`{"type": "image_url", "image_url": {"url": ...}}`)."""
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return None
    inner = part.get("image_url")
    url = inner.get("url") if isinstance(inner, dict) else inner
    return url if isinstance(url, str) else None


def is_safe_image(url: str) -> bool:
    return SAFE_IMAGE_URL.fullmatch(url) is not None


def kept_parts(content: object) -> list[dict[str, Any]] | None:
    """A message's content parts as kept with a saved chat, when they carry an image: its text
    parts and its inline images (anything else is left out); None for a message without one."""
    if not isinstance(content, list):
        return None
    kept: list[dict[str, Any]] = []
    for part in content:
        url = image_url(part)
        if url is not None and is_safe_image(url):
            kept.append({"type": "image_url", "image_url": {"url": url}})
        elif isinstance(part, dict) and part.get("type") == "text":
            if isinstance(part.get("text"), str):
                kept.append({"type": "text", "text": part["text"]})
    return kept if any(p["type"] == "image_url" for p in kept) else None


def images_size(parts: list[dict[str, Any]] | None) -> int:
    """Bytes the images of kept parts take (they count toward a chat's size like its text)."""
    return sum(len(url) for url in map(image_url, parts or []) if url is not None)


def describe(url: str) -> str:
    """An inline image in words: "image: 1024×768 JPEG" (its size when the header says)."""
    match = SAFE_IMAGE_URL.fullmatch(url)
    if match is None:
        return "image"
    kind = _FORMATS[match.group(1)]
    encoded = url.split(",", 1)[1]
    try:
        head = base64.b64decode(encoded[: 4 * (_HEAD_BYTES // 3)])
    except (binascii.Error, ValueError):
        return f"image: {kind}"
    size = _dimensions(match.group(1), head)
    return f"image: {size[0]}×{size[1]} {kind}" if size else f"image: {kind}"


def _dimensions(kind: str, head: bytes) -> tuple[int, int] | None:
    try:
        if kind == "png" and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return width, height
        if kind == "gif" and head[:4] == b"GIF8":
            width, height = struct.unpack("<HH", head[6:10])
            return width, height
        if kind == "webp" and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp(head)
        if kind == "jpeg" and head[:2] == b"\xff\xd8":
            return _jpeg(head)
    except struct.error:
        return None
    return None


def _webp(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg(head: bytes) -> tuple[int, int] | None:
    """The size in the first start-of-frame marker (SOF0 to SOF15, less DHT, JPG and DAC)."""
    at = 2
    while at + 9 < len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        length = struct.unpack(">H", head[at + 2 : at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None


def without_earlier_images(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The messages with the images of all but the last left out (a chat carried on with a
    model that cannot see them), and how many were; a message left with text alone becomes
    plain text again."""
    kept: list[dict[str, Any]] = []
    left_out = 0
    for index, message in enumerate(messages):
        content = message.get("content")
        if index == len(messages) - 1 or not isinstance(content, list):
            kept.append(message)
            continue
        parts = [p for p in content if not (isinstance(p, dict) and p.get("type") == "image_url")]
        if len(parts) == len(content):
            kept.append(message)
            continue
        left_out += len(content) - len(parts)
        texts = [p.get("text") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
        if len(texts) == len(parts) and all(isinstance(t, str) for t in texts):
            kept.append({**message, "content": "\n\n".join(t for t in texts if t)})
        else:
            kept.append({**message, "content": parts})
    return kept, left_out
