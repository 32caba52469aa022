"""The live page's attachments: a document's text read for the chat (the page's script sends
the file with the sign-in cookie and its CSRF token)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from sizzle.api.deps import StateDep
from sizzle.api.uploads import AttachmentOut, extract_upload, limit_upload
from sizzle.web.deps import CsrfChecked, SignedIn

router = APIRouter(include_in_schema=False)


# the size first: the CSRF check reads the form
@router.post("/attachments/extract", dependencies=[Depends(limit_upload), CsrfChecked])
async def extract(request: Request, state: StateDep, user: SignedIn) -> AttachmentOut:
    """The file's text for the prompt, and a note of what was included. Reading a PDF costs
    the server work: counted against the account's request limit, as the API's route is."""
    await state.rate_limiter.api_call(user_id=user.id, key_id=None)
    return await extract_upload(request)
