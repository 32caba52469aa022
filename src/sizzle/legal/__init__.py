"""The legal documents: Terms of Service, Acceptable Use Policy and Privacy Policy.

Each is a Markdown file. The defaults ship in `defaults/`; an operator points
SIZZLE_LEGAL_DIR at a folder, and each file found there (`terms.md`, `acceptable-use.md`,
`privacy.md`) replaces its default. A file's version is what its first line declares
(`<!-- version: 2026-12-03 -->`), else a digest of its text, so that any edit is a new
version. Users accept all three at sign-up; when one has a new version, the next sign-in
asks again (see `acceptance_version`).

Files are read again when they change on disk (a stat per use), so an operator publishes a
new version without a restart.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog
from markdown_it import MarkdownIt
from markupsafe import Markup

log = structlog.get_logger(__name__)

DEFAULTS = Path(__file__).parent / "defaults"


@dataclass(frozen=True)
class Kind:
    slug: str  # in the page's path: /legal/<slug>
    title: str
    short: str  # in the acceptance version


KINDS = (
    Kind("terms", "Terms of Service", "tos"),
    Kind("acceptable-use", "Acceptable Use Policy", "aup"),
    Kind("privacy", "Privacy Policy", "privacy"),
)
BY_SLUG = {kind.slug: kind for kind in KINDS}
_VERSION_LINE = re.compile(r"\A\s*<!--\s*version:\s*([A-Za-z0-9._-]{1,40})\s*-->[ \t]*\n?")
# Raw HTML is off: whatever the file holds is shown as text, never run as markup; links to
# javascript: and the like are refused by markdown-it's own link check.
_markdown = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")


@dataclass(frozen=True)
class LegalDocument:
    kind: Kind
    version: str
    text: str  # the Markdown, without its version line
    source: Path

    @property
    def html(self) -> Markup:
        return Markup(_markdown.render(self.text))  # noqa: S704 - markdown-it escapes the text


def parse(kind: Kind, raw: str, source: Path) -> LegalDocument:
    """A document from its file's text: the declared version, or a digest of the text."""
    declared = _VERSION_LINE.match(raw)
    text = raw[declared.end() :] if declared else raw
    version = declared.group(1) if declared else hashlib.sha256(raw.encode()).hexdigest()[:12]
    return LegalDocument(kind=kind, version=version, text=text, source=source)


class LegalLibrary:
    """The three documents of one folder of overrides (or none), read again when changed."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[Path, float, int], LegalDocument]] = {}

    def _source(self, kind: Kind) -> Path:
        if self.folder is not None:
            override = self.folder / f"{kind.slug}.md"
            if override.is_file():
                return override
        return DEFAULTS / f"{kind.slug}.md"

    def document(self, slug: str) -> LegalDocument:
        """The document whose slug is `slug` (KeyError for another). An operator's file that
        cannot be read is logged and the default shown, so that sign-in never fails for it."""
        kind = BY_SLUG[slug]
        source = self._source(kind)
        try:
            return self._read(kind, source)
        except OSError as exc:
            if source.parent == DEFAULTS:
                raise
            log.error("legal.unreadable", path=str(source), error=str(exc))
            return self._read(kind, DEFAULTS / f"{kind.slug}.md")

    def _read(self, kind: Kind, source: Path) -> LegalDocument:
        stat = source.stat()
        stamp = (source, stat.st_mtime, stat.st_size)
        with self._lock:
            cached = self._cache.get(kind.slug)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        # Not UTF-8 (an editor's other encoding): shown with replacement marks, not refused.
        found = parse(kind, source.read_text(encoding="utf-8", errors="replace"), source)
        with self._lock:
            self._cache[kind.slug] = (stamp, found)
        return found

    def documents(self) -> list[LegalDocument]:
        return [self.document(kind.slug) for kind in KINDS]

    def acceptance_version(self) -> str:
        """What a user accepts at sign-up, as kept on the account: every document's version,
        e.g. `tos-2026-12-03.aup-2026-12-03.privacy-2026-12-03`. A change to any is a new
        one."""
        return ".".join(f"{doc.kind.short}-{doc.version}" for doc in self.documents())


_libraries: dict[Path | None, LegalLibrary] = {}


def library(folder: Path | None) -> LegalLibrary:
    """The library of a folder of overrides (SIZZLE_LEGAL_DIR), one per process."""
    found = _libraries.get(folder)
    if found is None:
        found = _libraries.setdefault(folder, LegalLibrary(folder))
    return found
