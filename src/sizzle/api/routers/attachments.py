"""Chat attachments: a document's text read on the server, for the prompt."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from sizzle.api.deps import InferenceUserId
from sizzle.api.openapi import error_responses
from sizzle.api.uploads import AttachmentOut, extract_upload, limit_upload

router = APIRouter(prefix="/api/v1/attachments", tags=["workspace (OpenAI-compatible)"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post(
    "/extract",
    summary="Read a document's text for a chat (text, Markdown, CSV, PDF)",
    dependencies=[Depends(limit_upload)],
    responses=error_responses(411, 413, 415, 422),
    openapi_extra=UPLOAD_BODY,
)
async def extract(request: Request, _user_id: InferenceUserId) -> AttachmentOut:
    """The file's text, ready to put before a chat message (`prompt`), and a `note` of what
    was included: at most 30,000 characters of a file of at most 10 MB."""
    return await extract_upload(request)
