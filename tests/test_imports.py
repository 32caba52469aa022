"""Starting Sizzle loads no PDF library: fpdf (and Pillow under it) load with the first PDF
made, pypdf with the first one read."""

from __future__ import annotations

import subprocess
import sys

PDF_LIBRARIES = "{'fpdf', 'PIL', 'pypdf'}"

# run in a fresh interpreter: this one has loaded everything some other test needed
SCRIPT = f"""
import sys
from datetime import UTC, datetime

import sizzle.api.app, sizzle.cli

assert not {PDF_LIBRARIES} & set(sys.modules), sorted({PDF_LIBRARIES} & set(sys.modules))
from sizzle.services.statements import Statement, statement_pdf

moment = datetime(2026, 3, 1, tzinfo=UTC)
made = statement_pdf(Statement("a@example.com", "2026-03", moment, moment, 0, 0))
assert made.startswith(b"%PDF") and "fpdf" in sys.modules
from sizzle.services.attachments import extract

assert extract("statement.pdf", made).kind == "pdf" and "pypdf" in sys.modules
"""


def test_the_app_loads_the_pdf_library_only_to_make_a_pdf() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
