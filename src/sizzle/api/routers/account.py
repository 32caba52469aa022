"""My account's data: everything Sizzle holds about me as JSON, and deleting the account."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from sizzle.api.deps import CurrentUser, StateDep, client_ip
from sizzle.api.openapi import error_responses
from sizzle.api.schemas import AccountDeleteIn
from sizzle.services import account_data, accounts, audit

router = APIRouter(prefix="/api/v1/account", tags=["account"])


async def export_document(state: StateDep, user_id: str) -> Response:
    """The export as a JSON download (the API's and the account page's)."""
    now = state.clock.now()
    async with state.db.transaction() as tx:
        user = await accounts.get_active_user(tx, user_id)
        document = await account_data.export(tx, user, now=now)
        audit.record(tx, "account.exported", actor=f"user:{user.id}", now=now, user_id=user.id)
    return Response(
        json.dumps(document, indent=2, sort_keys=True),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="sizzle-data-{now:%Y%m%d}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/export",
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def export(user: CurrentUser, state: StateDep) -> Response:
    """Everything Sizzle holds about me, as one JSON document (sign-in token only)."""
    return await export_document(state, user.id)


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(409),
)
async def delete(
    body: AccountDeleteIn, user: CurrentUser, state: StateDep, request: Request
) -> None:
    """Delete my account, with my password: running sessions are stopped and billed to now,
    personal data is erased, and the ledger is kept under an anonymous id. 409 for an operator,
    or while a Sizzle Lab plan would renew."""
    async with state.rate_limiter.password_attempt(email=user.email, ip=client_ip(request)):
        await account_data.delete_account(
            state.db,
            state.providers,
            user_id=user.id,
            password=body.password,
            now=state.clock.now(),
            secret=state.settings.resolved_secret_key,
        )
