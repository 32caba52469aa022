"""`sizzle serve`: on an address other machines reach, only with SIZZLE_PUBLIC_URL; links go
there, other Host names are refused, and without SMTP mails land in a private file."""

from __future__ import annotations

import asyncio
import mailbox
import re
import stat
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from sizzle.cli import app
from sizzle.db.database import Database
from tests.conftest import TEST_SECRET
from tests.helpers import PASSWORD, fresh_email
from tests.processes import SizzleProcesses


@pytest.mark.parametrize(
    ("args", "host"),
    [
        (["--host", "0.0.0.0"], "127.0.0.1"),  # noqa: S104 - the address under test
        ([], "0.0.0.0"),  # noqa: S104 - as the Docker image sets SIZZLE_HOST
        ([], "::"),
        ([], "gpu-box.internal"),
    ],
)
async def test_serve_on_a_reachable_address_wants_the_public_url(
    tmp_path: Path, args: list[str], host: str
) -> None:
    env = {
        "SIZZLE_HOME": str(tmp_path / "home"),
        "SIZZLE_HOST": host,
        "SIZZLE_PUBLIC_URL": "",
        "SIZZLE_SECRET_KEY": TEST_SECRET,
        "COLUMNS": "300",
    }
    refused = await asyncio.to_thread(CliRunner().invoke, app, ["serve", *args], env=env)
    assert refused.exit_code == 1
    assert "set SIZZLE_PUBLIC_URL" in " ".join(refused.output.split())  # however it wraps
    assert not (tmp_path / "home").exists()  # refused before it made anything


@pytest.mark.slow
async def test_a_public_serve_mails_links_to_its_public_url_only(
    tmp_path: Path, db: Database, database_url: str
) -> None:
    home = tmp_path / "home"
    public = {"SIZZLE_PUBLIC_URL": "https://gpu.example.com", "SIZZLE_ALLOWED_HOSTS": ""}
    with SizzleProcesses(tmp_path, database_url, SIZZLE_SMTP_URL="", **public) as sizzle:
        email = fresh_email()
        sizzle.cli("admin", "create-user", email, "--password", PASSWORD)
        url = await sizzle.serve("api", "--host", "0.0.0.0", "--no-jobs")  # noqa: S104
        async with httpx.AsyncClient(base_url=url) as http:
            forged = await http.post(
                "/api/v1/auth/password-reset",
                json={"email": email},
                headers={"Host": "evil.example"},
            )
            assert forged.status_code == 400 and forged.json()["error"]["code"] == "invalid_host"
            asked = await http.post("/api/v1/auth/password-reset", json={"email": email})
            assert asked.status_code == 202

        mail_file = home / "mail.log"

        async def mailed() -> bool:
            return mail_file.exists() and len(mailbox.mbox(mail_file)) == 1

        await sizzle.until(mailed, "the reset mail in the mail file")
        (mail,) = mailbox.mbox(mail_file)
        assert mail["To"] == email
        body = str(mail.get_payload(decode=True), "utf-8")
        link = re.search(r"https://gpu\.example\.com(/reset-password\?token=\S+)", body)
        assert link
        assert stat.S_IMODE(mail_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        async with httpx.AsyncClient(base_url=url) as http:
            followed = await http.get(link.group(1))
            assert followed.status_code == 200, followed.text  # the link is followed
        sizzle.stop_all()
        log = sizzle.log("api").read_text()
        token = link.group(1).split("=", 1)[1]
        assert '"mail.written"' in log and "/reset-password?token=[hidden]" in log
        assert token not in log
