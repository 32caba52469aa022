"""Every log line of the test run, and of the server processes it starts, scanned for
secrets: a password hash, a sign-in or link token (a JWT), an API key, a link with its
token, the passwords and keys the tests use. conftest.py fails the run if one turns up."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import structlog

SECRET_SHAPES = (
    r"\$argon2",  # a password hash
    r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{20,}",  # a signed token: sign-in or link
    r"sz_live_[A-Za-z0-9]{16,}",  # an API key (its 12-character lookup alone is no key)
    r"(?:reset-password|verify-email)\?token=[\w%.-]{16,}",  # a mailed link with its token
)
_SHOWN = 400  # characters of an offending line shown in the report


class SecretScanner(logging.Handler):
    """A root-logger handler that renders each record as the JSON log line production writes
    (with its traceback) and keeps those that carry a secret."""

    def __init__(self, known_secrets: Iterable[str]) -> None:
        super().__init__(logging.INFO)
        known = [re.escape(secret) for secret in known_secrets]
        self.secrets = re.compile("|".join([*SECRET_SHAPES, *known]))
        self.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[structlog.stdlib.add_log_level],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(default=repr),
                ],
            )
        )
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a line that cannot be rendered is still scanned as best it can
            line = f"{record.msg!r} {record.args!r} {record.exc_text or ''}"
        self.scan(line, where=os.environ.get("PYTEST_CURRENT_TEST", "outside a test"))

    def scan(self, text: str, *, where: str) -> None:
        for line in text.splitlines():
            if self.secrets.search(line):
                self.leaks.append(f"{where}: {line[:_SHOWN]}")

    def scan_file(self, path: Path, *, where: str) -> None:
        """A server process's log, once it has ended."""
        if path.exists():
            self.scan(path.read_text(errors="replace"), where=where)

    def report(self) -> str:
        shown = "\n".join(self.leaks[:20])
        return f"{len(self.leaks)} log lines carry a secret:\n{shown}"


def install(scanner: SecretScanner, *, stderr_level: int = logging.WARNING) -> None:
    """Scan every INFO line and above; the terminal still gets only `stderr_level` and above."""
    root = logging.getLogger()
    for handler in root.handlers:
        if handler is not scanner:
            handler.setLevel(stderr_level)
    if scanner not in root.handlers:
        root.addHandler(scanner)
    root.setLevel(logging.INFO)
    # httpx logs each URL a client opens: in tests those are mostly the tests' own clients
    # following mailed links. Sizzle's own calls through httpx (providers, Stripe) put their
    # keys in headers, never in URLs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
