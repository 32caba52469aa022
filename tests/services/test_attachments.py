"""Reading attached documents: a PDF's pages, text files, where the text is cut, and the files
Sizzle refuses, each with a sentence that says why."""

from __future__ import annotations

import pytest
from fpdf import FPDF

from sizzle.errors import PayloadTooLarge, SizzleError, UnsupportedMediaType, ValidationFailed
from sizzle.services.attachments import MAX_FILE_BYTES, MAX_INCLUDED_CHARS, extract, safe_name


def pdf_of(*pages: str, password: str | None = None) -> bytes:
    """A real PDF with one page per text, made the way Sizzle makes invoices."""
    document = FPDF()
    for text in pages:
        document.add_page()
        document.set_font("Helvetica", size=11)
        document.multi_cell(0, 6, text)
    if password:
        document.set_encryption(owner_password="owner", user_password=password)
    return bytes(document.output())


def test_a_pdfs_pages_are_read_and_noted() -> None:
    found = extract("report.pdf", pdf_of("Quarterly revenue grew 12%.", "Costs fell by a third."))
    assert "Quarterly revenue grew 12%." in found.text and "Costs fell" in found.text
    assert (found.kind, found.pages, found.truncated) == ("pdf", 2, False)
    assert found.note == f"report.pdf: 2 pages, {len(found.text):,} characters included"
    assert found.prompt.startswith('Attached file "report.pdf":\n\nQuarterly revenue')


def test_a_long_pdf_is_cut_and_the_note_says_where() -> None:
    page = "word " * 600  # 3,000 characters: one page
    found = extract("book.pdf", pdf_of(*[page] * 12))
    assert found.pages == 12
    assert found.truncated and len(found.text) == MAX_INCLUDED_CHARS
    assert found.note == (
        f"book.pdf: pages 1 to {found.pages_read} of 12 included, cut off at 30,000 characters"
    )
    assert found.pages_read is not None and found.pages_read < 12
    assert "cut off" in found.prompt


def test_text_markdown_and_csv_are_decoded() -> None:
    assert extract("notes.md", "# Título\n\nñ".encode()).text == "# Título\n\nñ"
    assert extract("old.txt", "café".encode("cp1252")).text == "café"
    table = extract("prices.csv", b"tier,price\nstarter,0.15\npro,0.45\n")
    assert table.note == f"prices.csv: 3 rows, {len(table.text)} characters included"


def test_a_long_text_is_cut_at_the_limit() -> None:
    found = extract("log.txt", b"x" * 40_000)
    assert found.truncated and len(found.text) == MAX_INCLUDED_CHARS
    assert found.note == (
        "log.txt: the first 30,000 characters of 40,000 included (cut off at 30,000)"
    )


@pytest.mark.parametrize(
    ("name", "data", "error", "words"),
    [
        ("slides.pptx", b"PK\x03\x04", UnsupportedMediaType, "Sizzle reads text (.txt)"),
        ("photo.jpg", b"\xff\xd8\xff", UnsupportedMediaType, "Images go with the image button"),
        ("fake.pdf", b"hello", ValidationFailed, "fake.pdf is not a PDF file."),
        ("broken.pdf", b"%PDF-1.7\n garbage", ValidationFailed, "could not be read as a PDF"),
        ("binary.txt", b"a\x00b", ValidationFailed, "does not hold plain text"),
        ("empty.md", b"  \n", ValidationFailed, "empty.md is empty."),
        ("big.txt", b"x" * (MAX_FILE_BYTES + 1), PayloadTooLarge, "at most 10 MB"),
    ],
)
def test_what_cannot_be_read_is_refused_with_a_sentence(
    name: str, data: bytes, error: type[SizzleError], words: str
) -> None:
    with pytest.raises(error) as refused:
        extract(name, data)
    assert words in refused.value.message


def test_a_locked_pdf_says_so() -> None:
    with pytest.raises(ValidationFailed, match="locked with a password"):
        extract("secret.pdf", pdf_of("hidden", password="s3cret"))


def test_hostile_names_lose_folders_and_control_characters() -> None:
    hostile = "<img src=x onerror=alert(1)>.txt"
    assert safe_name(f"../../etc/{hostile}") == hostile  # kept as text: the page escapes it
    assert safe_name("C:\\Users\\me\\report\u202e.pdf") == "report.pdf"
    assert safe_name("a\nb\x00c.md") == "abc.md"
    assert safe_name("") == "file"
    assert len(safe_name("n" * 500 + ".txt")) == 120
