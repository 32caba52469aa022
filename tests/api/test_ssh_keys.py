"""A user's own SSH keys: added with a sign-in token, checked (one public key of a usable type,
nothing else), listed with their fingerprints, removed; at most ten; in the account export and
gone with the account."""

from __future__ import annotations

import base64
import os
import struct

import asyncssh
import httpx
import pytest
from sqlalchemy import select, text

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import AuditEvent, UserSshKey
from sizzle.services.ssh_keys import MAX_KEYS_PER_USER
from tests.helpers import PASSWORD, assert_error, log_in, make_user, sign_up
from tests.user_ssh import public_line

SSH_KEYS = "/api/v1/ssh-keys"


def sk_line(kind: str) -> str:
    """A security-key (FIDO) public key line: what `ssh-keygen -t ed25519-sk` writes."""

    def field(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    if kind == "sk-ssh-ed25519@openssh.com":
        point = os.urandom(32)
        blob = field(kind.encode()) + field(point) + field(b"ssh:")
    else:
        ecdsa = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
        inner = ecdsa.public_data  # string type, string curve, string point
        curve_and_point = inner[4 + len(b"ecdsa-sha2-nistp256") :]
        blob = field(kind.encode()) + curve_and_point + field(b"ssh:")
    return f"{kind} {base64.b64encode(blob).decode()} yubikey"


async def add(
    client: httpx.AsyncClient, auth: dict[str, str], key: str, *, name: str = "laptop"
) -> httpx.Response:
    return await client.post(SSH_KEYS, json={"name": name, "public_key": key}, headers=auth)


async def test_a_key_is_added_listed_with_its_fingerprint_and_removed(
    client: httpx.AsyncClient, db: Database
) -> None:
    auth = await sign_up(client)
    line = public_line()
    made = await add(client, auth, f"  {line}\r\n")
    assert made.status_code == 201, made.text
    body = made.json()
    expected = asyncssh.import_public_key(line).get_fingerprint("sha256")
    assert body["fingerprint"] == expected and expected.startswith("SHA256:")
    assert body["public_key"] == line and body["name"] == "laptop"

    listed = (await client.get(SSH_KEYS, headers=auth)).json()
    assert listed == {"items": [body], "total": 1}

    removed = await client.delete(f"{SSH_KEYS}/{body['id']}", headers=auth)
    assert removed.status_code == 204
    assert (await client.get(SSH_KEYS, headers=auth)).json() == {"items": [], "total": 0}
    assert_error(await client.delete(f"{SSH_KEYS}/{body['id']}", headers=auth), 404)
    async with db.read() as tx:
        actions = list(
            await tx.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.action.like("ssh_key.%"))
                .order_by(AuditEvent.id)
            )
        )
    assert actions == ["ssh_key.added", "ssh_key.removed"]


@pytest.mark.parametrize(
    "line",
    [
        public_line("ssh-ed25519"),
        public_line("ssh-rsa", key_size=2048),
        public_line("ecdsa-sha2-nistp256"),
        public_line("ecdsa-sha2-nistp384"),
        public_line("ecdsa-sha2-nistp521"),
        sk_line("sk-ssh-ed25519@openssh.com"),
        sk_line("sk-ecdsa-sha2-nistp256@openssh.com"),
    ],
    ids=lambda line: line.split()[0],
)
async def test_each_usable_kind_of_key_is_taken(client: httpx.AsyncClient, line: str) -> None:
    made = await add(client, await sign_up(client), line)
    assert made.status_code == 201, made.text
    assert made.json()["public_key"].split()[:2] == line.split()[:2]


async def test_a_comment_that_is_not_plain_text_is_dropped(client: httpx.AsyncClient) -> None:
    line = public_line(comment="")
    made = await add(client, await sign_up(client), f"{line} jürgen's\tlaptop")
    assert made.status_code == 201, made.text
    assert made.json()["public_key"] == line


_ED25519 = asyncssh.generate_private_key("ssh-ed25519")
_GOOD = public_line()
_REFUSED = {
    "private key": (
        _ED25519.export_private_key("openssh").decode(),
        "private_key_refused",
        "private key",
    ),
    "PEM private key": (
        asyncssh.generate_private_key("ssh-rsa").export_private_key("pkcs8-pem").decode(),
        "private_key_refused",
        "private key",
    ),
    "options in front": (f'command="/bin/sh" {_GOOD}', "bad_ssh_key", "without options"),
    "from= option": (f'from="10.0.0.1",no-pty {_GOOD}', "bad_ssh_key", "without options"),
    "two keys": (f"{_GOOD}\n{public_line()}", "bad_ssh_key", "one key"),
    "a CR inside": (_GOOD.replace(" ", "\r", 1), "bad_ssh_key", "one key"),
    "a NUL": (_GOOD + "\x00", "bad_ssh_key", "control characters"),
    "an escape": (_GOOD[:30] + "\x1b" + _GOOD[30:], "bad_ssh_key", "control characters"),
    "too long": (_GOOD + " " + "x" * 9000, "bad_ssh_key", "too long"),
    "weak RSA": (public_line("ssh-rsa", key_size=1024), "weak_ssh_key", "too weak"),
    "DSA": (public_line("ssh-dss"), "bad_ssh_key", "should begin with"),
    "ed448": (public_line("ssh-ed448"), "bad_ssh_key", "should begin with"),
    "certificate": (
        _ED25519.generate_user_certificate(_ED25519, "me").export_certificate().decode(),
        "bad_ssh_key",
        "certificate",
    ),
    "RFC 4716 form": (
        _ED25519.export_public_key("rfc4716").decode(),
        "bad_ssh_key",
        "ssh-keygen -i",
    ),
    "garbage": ("hello world", "bad_ssh_key", "should begin with"),
    "empty": ("   ", "bad_ssh_key", "paste your SSH public key"),
    "no key data": ("ssh-ed25519", "bad_ssh_key", "missing or damaged"),
    "damaged data": ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIbad", "bad_ssh_key", "does not decode"),
    "type mismatch": (
        "ssh-rsa " + _GOOD.split()[1],
        "bad_ssh_key",
        "does not decode",
    ),
}


@pytest.mark.parametrize("case", list(_REFUSED), ids=list(_REFUSED))
async def test_anything_but_one_usable_public_key_is_a_clear_422(
    client: httpx.AsyncClient, db: Database, case: str
) -> None:
    text, code, words = _REFUSED[case]
    auth = await sign_up(client)
    error = assert_error(await add(client, auth, text), 422, code)
    assert words in error["message"], error
    async with db.read() as tx:
        assert list(await tx.scalars(select(UserSshKey))) == []


async def test_a_name_is_needed_and_bounded(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    assert_error(await add(client, auth, _GOOD, name="  "), 422, "bad_name")
    assert_error(await add(client, auth, _GOOD, name="x" * 101), 422)
    assert_error(await add(client, auth, _GOOD, name="a\x00b"), 422)
    odd = await client.post(SSH_KEYS, json={"name": "x", "public_key": 5}, headers=auth)
    assert_error(odd, 422)


async def test_the_same_key_twice_is_a_409_naming_the_first(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    assert (await add(client, auth, _GOOD, name="work")).status_code == 201
    again = await add(client, auth, _GOOD.rsplit(" ", 1)[0] + " other-comment", name="again")
    assert "“work”" in assert_error(again, 409, "duplicate_ssh_key")["message"]
    # another user may add the same public key
    assert (await add(client, await sign_up(client), _GOOD)).status_code == 201


async def test_at_most_ten_keys(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    for n in range(MAX_KEYS_PER_USER):
        assert (await add(client, auth, public_line(), name=f"k{n}")).status_code == 201
    assert_error(await add(client, auth, public_line()), 422, "too_many_ssh_keys")
    listed = (await client.get(SSH_KEYS, headers=auth)).json()
    assert listed["total"] == MAX_KEYS_PER_USER == 10
    paged = (await client.get(f"{SSH_KEYS}?limit=3&offset=9", headers=auth)).json()
    assert len(paged["items"]) == 1 and paged["total"] == 10


async def test_another_users_key_is_a_404_and_not_listed(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    key_id = (await add(client, owner, _GOOD)).json()["id"]
    other = await sign_up(client)
    assert_error(await client.delete(f"{SSH_KEYS}/{key_id}", headers=other), 404)
    assert (await client.get(SSH_KEYS, headers=other)).json()["total"] == 0
    assert (await client.get(SSH_KEYS, headers=owner)).json()["total"] == 1


async def test_an_api_key_cannot_add_list_or_remove_ssh_keys(client: httpx.AsyncClient) -> None:
    auth = await sign_up(client)
    scopes = ["sessions:read", "sessions:write", "billing:read", "inference"]
    made = await client.post("/api/v1/keys", json={"name": "k", "scopes": scopes}, headers=auth)
    as_key = {"X-API-Key": made.json()["key"]}
    for method, path, body in (
        ("POST", SSH_KEYS, {"name": "x", "public_key": _GOOD}),
        ("GET", SSH_KEYS, None),
        ("DELETE", f"{SSH_KEYS}/{'0' * 32}", None),
    ):
        response = await client.request(method, path, json=body, headers=as_key)
        assert_error(response, 403, "api_key_not_allowed")


async def test_the_export_holds_the_keys_and_deleting_the_account_erases_them(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    auth = await log_in(client, email=user.email)
    line = public_line(comment="alice@laptop")
    assert (await add(client, auth, line)).status_code == 201
    exported = await client.get("/api/v1/account/export", headers=auth)
    assert exported.status_code == 200, exported.text
    [kept] = exported.json()["ssh_keys"]
    assert kept["public_key"] == line and kept["fingerprint"].startswith("SHA256:")

    deleted = await client.request(
        "DELETE", "/api/v1/account", json={"password": PASSWORD}, headers=auth
    )
    assert deleted.status_code in (200, 204), deleted.text
    async with db.read() as tx:
        assert list(await tx.scalars(select(UserSshKey))) == []
        details = list(
            await tx.scalars(select(AuditEvent.detail).where(AuditEvent.action.like("ssh_key.%")))
        )
    assert details == [None]  # the event stays; the key's name and fingerprint do not


async def test_the_keys_go_with_the_users_row(db: Database, clock: FakeClock) -> None:
    """Users are anonymized, never removed, by Sizzle; should an operator remove one by hand,
    the database takes the keys with it (ON DELETE CASCADE)."""
    user = await make_user(db, now=clock.now(), free_minutes=0)
    async with db.transaction() as tx:
        tx.add(
            UserSshKey(
                id="k" * 32,
                user_id=user.id,
                name="laptop",
                public_key=_GOOD,
                fingerprint="SHA256:x",
                created_at=clock.now(),
            )
        )
    async with db.transaction() as tx:
        for table in ("ledger_entries", "ledger_accounts", "audit_events", "users"):
            column = "id" if table == "users" else "user_id"
            await tx.execute(text(f"DELETE FROM {table} WHERE {column} = :id"), {"id": user.id})  # noqa: S608
    async with db.read() as tx:
        assert list(await tx.scalars(select(UserSshKey))) == []
