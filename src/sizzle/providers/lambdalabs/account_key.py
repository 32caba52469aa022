"""Sizzle's SSH key pair at Lambda: the one key every launch names, and the only way in to a
fresh VM before its boot script has authorized the session's own key.

Lambda requires exactly one registered key per launch and puts it on the VM for the login user.
Sizzle's pair is derived from the secret key (HKDF-SHA256 with a label of its own, the 32 bytes
an ed25519 seed), so every replica has the same pair and nothing is stored; it is registered
once (`POST /ssh-keys` with its public half) under a name made from its fingerprint, and found
again by its public key. A key of the account whose private half Sizzle does not hold is never
named: Sizzle could not log in to boot the VM.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import asyncssh
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SEED_INFO = b"sizzle lambda account ssh key v1"
NAME_PREFIX = "sizzle-"


@dataclass(frozen=True)
class AccountKey:
    """The pair: its name at Lambda, its public half (one OpenSSH line), its private half."""

    name: str
    public_key: str
    private_key: asyncssh.SSHKey = field(repr=False, compare=False)

    def is_registered_as(self, public_key: str | None) -> bool:
        """Whether a key listed at Lambda is this one (its type and data; comments aside)."""
        return _algorithm_and_data(public_key or "") == _algorithm_and_data(self.public_key)


def account_key(secret: str) -> AccountKey:
    """The pair derived from the secret key: the same in every process that shares it."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEED_INFO).derive(
        secret.encode()
    )
    pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    private = asyncssh.import_private_key(pem)
    algorithm, data = _algorithm_and_data(private.export_public_key("openssh").decode())
    # Lambda names are at most 64 characters; 16 hex digits of the key's hash tell ours apart.
    name = NAME_PREFIX + hashlib.sha256(data.encode()).hexdigest()[:16]
    return AccountKey(name=name, public_key=f"{algorithm} {data} {name}", private_key=private)


def _algorithm_and_data(public_key: str) -> tuple[str, str]:
    algorithm, _, rest = public_key.strip().partition(" ")
    return algorithm, rest.partition(" ")[0]
