"""Documents attached to a chat: their text, read here on the server, and added to the prompt.

Text, Markdown and CSV files are decoded; a PDF's text is extracted page by page with pypdf.
At most MAX_INCLUDED_CHARS characters of a file go into the prompt (a model's context is
limited, and so is the user's patience); the note says what was included and where the text
was cut, so nobody mistakes a part for the whole. Images are not read here: the page shrinks
them and sends them to a model that sees images, as OpenAI content parts.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
from dataclasses import dataclass

from sizzle.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_INCLUDED_CHARS = 30_000  # about 7,500 tokens: room left in an 8K context for the chat
MAX_NAME_CHARS = 120
TEXT_KINDS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown"}
KINDS = {**TEXT_KINDS, ".csv": "csv", ".pdf": "pdf"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".heic")
READABLE = "text (.txt), Markdown (.md), CSV (.csv) and PDF (.pdf) files"

logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about odd PDFs are noise


@dataclass(frozen=True)
class Extracted:
    """What a file gave: its text for the prompt, and a note of what was included."""

    name: str
    kind: str
    text: str  # what goes into the prompt (after any cut)
    characters: int  # of the whole text, where known (a cut PDF is not read to its end)
    truncated: bool
    pages: int | None = None
    pages_read: int | None = None
    rows: int | None = None

    @property
    def note(self) -> str:
        """What was included, in words: "report.pdf: 3 pages, 12,400 characters included"."""
        size = f"{len(self.text):,} characters"
        if self.kind == "pdf":
            if self.truncated:
                return (
                    f"{self.name}: pages 1 to {self.pages_read} of {self.pages} included, "
                    f"cut off at {MAX_INCLUDED_CHARS:,} characters"
                )
            return f"{self.name}: {_count(self.pages or 0, 'page')}, {size} included"
        what = f"{_count(self.rows or 0, 'row')}, " if self.kind == "csv" else ""
        if self.truncated:
            return (
                f"{self.name}: {what}the first {size} of {self.characters:,} included "
                f"(cut off at {MAX_INCLUDED_CHARS:,})"
            )
        return f"{self.name}: {what}{size} included"

    @property
    def prompt(self) -> str:
        """The file as the model reads it, before the user's message."""
        cut = " (cut off; the rest was not included)" if self.truncated else ""
        return f'Attached file "{self.name}":\n\n{self.text}\n\n(End of "{self.name}"{cut}.)'


def safe_name(name: str | None) -> str:
    """A file name fit to show and to quote: no folders, no control characters, not too long."""
    base = re.split(r"[\\/]", name or "")[-1]
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return cleaned[:MAX_NAME_CHARS] or "file"


def extract(name: str | None, data: bytes) -> Extracted:
    """The text of an uploaded file; 413 when too large, 415 when Sizzle cannot read its kind,
    422 when it is not what its name says or holds no text."""
    shown = safe_name(name)
    if len(data) > MAX_FILE_BYTES:
        raise PayloadTooLarge(
            f"{shown} is {len(data) / 1_048_576:.1f} MB; Sizzle reads files of at most "
            f"{MAX_FILE_BYTES // 1_048_576} MB.",
            code="file_too_large",
        )
    suffix = "." + shown.rsplit(".", 1)[-1].lower() if "." in shown else ""
    kind = KINDS.get(suffix)
    if kind is None:
        hint = (
            " Images go with the image button, to a model that sees images."
            if suffix in IMAGE_SUFFIXES
            else ""
        )
        raise UnsupportedMediaType(
            f"{shown} cannot be read: Sizzle reads {READABLE}.{hint}", code="unsupported_file"
        )
    if not data.strip():
        raise ValidationFailed(f"{shown} is empty.", code="empty_file")
    if kind == "pdf":
        return _pdf(shown, data)
    text = _decoded(shown, data)
    rows = len(text.splitlines()) if kind == "csv" else None
    return Extracted(
        name=shown,
        kind=kind,
        text=text[:MAX_INCLUDED_CHARS],
        characters=len(text),
        truncated=len(text) > MAX_INCLUDED_CHARS,
        rows=rows,
    )


def _decoded(name: str, data: bytes) -> str:
    if b"\x00" in data:
        raise ValidationFailed(f"{name} does not hold plain text.", code="not_text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # older Windows files


def _pdf(name: str, data: bytes) -> Extracted:
    if not data.lstrip().startswith(b"%PDF-"):
        raise ValidationFailed(f"{name} is not a PDF file.", code="not_a_pdf")
    # loaded with the first PDF read, not at start (a quarter of a second of imports)
    import pypdf
    from pypdf.errors import PyPdfError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ValidationFailed(
                f"{name} is locked with a password; save it without one and attach it again.",
                code="pdf_locked",
            )
        pages = len(reader.pages)
        parts: list[str] = []
        length = 0
        read = 0
        for page in reader.pages:
            if length >= MAX_INCLUDED_CHARS:
                break
            text = (page.extract_text() or "").strip()
            read += 1
            if text:
                parts.append(text)
                length += len(text) + 2
    except ValidationFailed:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise ValidationFailed(
            f"{name} could not be read as a PDF ({type(exc).__name__}).", code="pdf_unreadable"
        ) from None
    text = "\n\n".join(parts)
    if not text:
        raise ValidationFailed(
            f"{name} has no text Sizzle can read: its pages may be scanned images.",
            code="pdf_without_text",
        )
    truncated = len(text) > MAX_INCLUDED_CHARS or read < pages
    return Extracted(
        name=name,
        kind="pdf",
        text=text[:MAX_INCLUDED_CHARS],
        characters=len(text),
        truncated=truncated,
        pages=pages,
        pages_read=read,
    )


def _count(number: int, word: str) -> str:
    return f"{number:,} {word}{'' if number == 1 else 's'}"
