"""Mail to users (email checks, password resets): over SMTP when `SIZZLE_SMTP_URL` is set,
otherwise appended to a file only its owner may read (mbox format), so that a Sizzle without a
mail server still works and its links never reach the log."""

from __future__ import annotations

import asyncio
import io
import os
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.generator import Generator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

import structlog

from sizzle.errors import ValidationFailed

log = structlog.get_logger(__name__)

_DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
SMTP_TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class SmtpServer:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValidationFailed(
                "SIZZLE_SMTP_URL must look like smtp://host:25, "
                "smtp+starttls://user:password@host:587 or smtps://user:password@host:465"
            )
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=parts.port or _DEFAULT_PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


class Mailer:
    def __init__(self, smtp_url: str, sender: str, *, mail_file: Path) -> None:
        self.server = SmtpServer.parse(smtp_url) if smtp_url else None
        self.sender = sender
        self.mail_file = mail_file

    async def send(self, mail: Mail) -> bool:
        """Send one mail; False (and a logged error) when the server refused or is away. A
        request that mails never fails for that: the user can ask for the link again."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.body)
        if self.server is None:
            return await self._write(mail, message)
        try:
            await asyncio.to_thread(self._deliver, self.server, message)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("mail.failed", to=mail.to, subject=mail.subject, error=str(exc))
            return False
        log.info("mail.sent", to=mail.to, subject=mail.subject)
        return True

    async def _write(self, mail: Mail, message: EmailMessage) -> bool:
        # the log names the mail, never its body: the links in it sign in or reset a password
        domain = mail.to.rpartition("@")[2]
        try:
            await asyncio.to_thread(append_to_mailbox, self.mail_file, message)
        except OSError as exc:
            log.error("mail.failed", to_domain=domain, subject=mail.subject, error=str(exc))
            return False
        log.info("mail.written", to_domain=domain, subject=mail.subject, file=str(self.mail_file))
        return True

    @staticmethod
    def _deliver(server: SmtpServer, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if server.scheme == "smtps":
            smtp = smtplib.SMTP_SSL(
                server.host, server.port, timeout=SMTP_TIMEOUT_SECONDS, context=context
            )
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=SMTP_TIMEOUT_SECONDS)
        with smtp:
            if server.scheme == "smtp+starttls":
                smtp.starttls(context=context)
            if server.username:
                smtp.login(server.username, server.password or "")
            smtp.send_message(message)


def append_to_mailbox(path: Path, message: EmailMessage) -> None:
    """Append one mail to an mbox file, made readable and writable by its owner only."""
    message.set_unixfrom(f"From sizzle {time.asctime(time.gmtime())}")
    text = io.StringIO()
    Generator(text, mangle_from_=True).flatten(message, unixfrom=True)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # also a file made before, by hand or by an older Sizzle
        # one write per mail: mails sent at once never interleave
        os.write(descriptor, (text.getvalue().rstrip("\n") + "\n\n").encode())
    finally:
        os.close(descriptor)
