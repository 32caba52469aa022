"""The scan of the run's logs for secrets finds each kind of secret, in a structlog line, in a
traceback, and in a server process's log file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import structlog

from tests.secret_logs import SecretScanner

LEAKS = [
    "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEiLCJleHAiOjF9.c2lnbmF0dXJlc2lnbmF0dXJlc2ln",
    "sz_live_ABCDEFGHIJKLmnopqrstuvwxyz0123456789",
    "https://gpu.example.com/reset-password?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0",
    "the operator's own secret",
]


@pytest.fixture
def scanner() -> SecretScanner:
    return SecretScanner(known_secrets=["the operator's own secret"])


@pytest.mark.parametrize("leak", LEAKS)
def test_each_kind_of_secret_is_found_in_a_line(scanner: SecretScanner, leak: str) -> None:
    scanner.scan(f'{{"event": "user.saved", "detail": "{leak}"}}', where="here")
    assert len(scanner.leaks) == 1 and scanner.leaks[0].startswith("here: ")


def test_harmless_lines_pass(scanner: SecretScanner) -> None:
    scanner.scan('{"event": "key.created", "prefix": "sz_live_ab12cd34ef56"}', where="here")
    scanner.scan('"GET /reset-password?token=[hidden] HTTP/1.1" 200', where="here")
    scanner.scan('{"event": "mail.written", "to_domain": "example.com"}', where="here")
    assert scanner.leaks == []


def test_a_logged_traceback_is_read_too(scanner: SecretScanner) -> None:
    logger = logging.getLogger("tests.secret_logs.probe")
    logger.addHandler(scanner)
    logger.propagate = False  # this test's deliberate leak stays out of the run's own scan
    try:
        try:
            raise ValueError(f"[parameters: ('{LEAKS[0]}',)]")
        except ValueError:
            structlog.get_logger("tests.secret_logs.probe").exception("request.failed")
    finally:
        logger.removeHandler(scanner)
    assert len(scanner.leaks) == 1 and "request.failed" in scanner.leaks[0]


def test_a_process_log_file_is_read(scanner: SecretScanner, tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    log.write_text(f'{{"event": "ok"}}\n{{"event": "mail", "body": "{LEAKS[3]}"}}\n')
    scanner.scan_file(log, where="the api process")
    assert scanner.leaks == [f'the api process: {{"event": "mail", "body": "{LEAKS[3]}"}}']


def test_uvicorn_access_lines_hide_a_links_token(scanner: SecretScanner) -> None:
    # conftest.py set logging up as `sizzle serve` does (configure_logging), filters and all
    access = logging.getLogger("uvicorn.access")
    record = access.makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/reset-password?{LEAKS[3].split('?')[1]}&x=1", "1.1", 200),
        None,
    )
    assert access.filter(record)
    assert record.getMessage() == (
        '127.0.0.1:5000 - "GET /reset-password?token=[hidden]&x=1 HTTP/1.1" 200'
    )
