"""A file sent to be read (a chat's attachment): its size checked before the body is read,
the multipart form parsed, and its text extracted off the event loop."""

from __future__ import annotations

import anyio
from fastapi import Request
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from sizzle.errors import LengthRequired, PayloadTooLarge, ValidationFailed
from sizzle.services import attachments

# the file, and room for the form around it
MAX_UPLOAD_BYTES = attachments.MAX_FILE_BYTES + 64 * 1024
TOO_LARGE = (
    f"The file is over {attachments.MAX_FILE_BYTES // 1_048_576} MB, the most Sizzle reads "
    "from one file."
)


class AttachmentOut(BaseModel):
    """A file's text, ready to go before the user's message, and what was included."""

    name: str = Field(description="The file's name, without folders or control characters.")
    kind: str = Field(description="text, markdown, csv or pdf.")
    note: str = Field(description='What was included, e.g. "report.pdf: 3 pages, 12,400 ..."')
    prompt: str = Field(description="The file's text as the model reads it, before the message.")
    characters: int = Field(description="Characters of the text read.")
    included_characters: int = Field(description="How many of them are in `prompt`.")
    truncated: bool = Field(description="Whether the text was cut off.")
    pages: int | None = Field(None, description="A PDF's pages.")
    rows: int | None = Field(None, description="A CSV's rows, its header included.")


async def limit_upload(request: Request) -> None:
    """411 without a Content-Length, 413 over the limit: before anything reads the body."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise LengthRequired("Send the file with its size (a Content-Length header).")
    if int(declared) > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(TOO_LARGE, code="file_too_large")


async def extract_upload(request: Request) -> AttachmentOut:
    """The text of the form's `file` field (multipart/form-data)."""
    form = await request.form(max_files=1, max_fields=4)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ValidationFailed(
            'The field "file" is required: send the file as multipart/form-data.',
            code="file_missing",
        )
    data = await upload.read(attachments.MAX_FILE_BYTES + 1)
    found = await anyio.to_thread.run_sync(attachments.extract, upload.filename, data)
    return AttachmentOut(
        name=found.name,
        kind=found.kind,
        note=found.note,
        prompt=found.prompt,
        characters=found.characters,
        included_characters=len(found.text),
        truncated=found.truncated,
        pages=found.pages,
        rows=found.rows,
    )
