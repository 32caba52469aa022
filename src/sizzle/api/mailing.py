"""Mails a request sends: made in the request, sent after the answer (FastAPI's background
tasks), so a slow mail server never holds a page up, nor tells by its timing whether an
address has an account. Used by the API and the pages alike."""

from __future__ import annotations

from fastapi import BackgroundTasks

from sizzle.services.mail import Mail
from sizzle.state import AppState


def _send_later(state: AppState, background: BackgroundTasks, mail: Mail | None) -> bool:
    if mail is None:
        return False
    background.add_task(state.mailer.send, mail)
    return True


async def mail_verification(state: AppState, background: BackgroundTasks, user_id: str) -> bool:
    """The link that confirms the user's address; False when it is confirmed already. Links
    point at SIZZLE_PUBLIC_URL, never at the request's Host (which its sender chooses)."""
    mail = await state.account_links.verification_mail(
        user_id, base_url=state.settings.public_base_url
    )
    return _send_later(state, background, mail)


async def mail_password_reset(state: AppState, background: BackgroundTasks, email: str) -> None:
    """A reset link, if the address has an account (the caller says the same either way)."""
    mail = await state.account_links.password_reset_mail(
        email, base_url=state.settings.public_base_url
    )
    _send_later(state, background, mail)
