"""A user's own SSH public key, checked and put in one normal form, and the exact command that
logs in with it. Pure: no I/O.

A key is one OpenSSH line, `<type> <base64> [comment]`, of a type the instance's boot script
accepts (`sizzle/workload/boot/instance.sh`, `is_public_key`): ed25519, RSA of 2048 bits or
more, ECDSA, and the security-key (sk-) kinds. Anything else is refused with words that say
what to paste instead: a private key, `authorized_keys` options (`command="…" ssh-…`), several
keys at once, the RFC 4716 multi-line form, control characters.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote

import asyncssh

from sizzle.errors import ValidationFailed

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
MIN_RSA_BITS = 2048
MAX_KEY_LENGTH = 8192  # an RSA key of 16384 bits is about 2,800 characters
MAX_COMMENT_LENGTH = 100
# The comment is kept only if it is plain printable ASCII (the boot script's check).
_PLAIN_COMMENT = re.compile(r"[\x21-\x7e][\x20-\x7e]*")
_BASE64 = re.compile(r"AAAA[A-Za-z0-9+/]+={0,3}")
_PRIVATE_MARKERS = ("PRIVATE KEY", "PuTTY-User-Key-File", "OPENSSH PRIVATE")


@dataclass(frozen=True)
class PublicKey:
    """A checked key: its type, its line in normal form, and its SHA-256 fingerprint."""

    algorithm: str
    line: str
    fingerprint: str


def _refuse(message: str, code: str = "bad_ssh_key") -> ValidationFailed:
    return ValidationFailed(message, code=code)


def parse_public_key(text: str) -> PublicKey:
    """The key pasted, checked; a 422 saying what is wrong otherwise."""
    if len(text) > MAX_KEY_LENGTH:
        raise _refuse(
            f"that is too long for an SSH public key (at most {MAX_KEY_LENGTH} characters)"
        )
    if any(marker in text for marker in _PRIVATE_MARKERS):
        raise _refuse(
            "that is a private key: never share it, not even here. Paste the public key, the "
            "contents of the file ending in .pub (for example ~/.ssh/id_ed25519.pub)",
            code="private_key_refused",
        )
    stripped = text.strip()
    if "BEGIN SSH2 PUBLIC KEY" in stripped:
        raise _refuse(
            "that key is in the multi-line SSH2 form: convert it with "
            "`ssh-keygen -i -f key.pub` and paste the one line it prints"
        )
    if "\n" in stripped or "\r" in stripped:
        raise _refuse("paste one key, on one line: add each key on its own")
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in stripped):
        raise _refuse("an SSH public key has no control characters")
    if not stripped:
        raise _refuse("paste your SSH public key, the line that begins with ssh-ed25519 or ssh-rsa")
    words = stripped.split(None, 2)
    kind = words[0]
    if kind not in KEY_TYPES:
        if kind.endswith("-cert-v01@openssh.com"):
            raise _refuse("that is an SSH certificate: paste the plain public key it was made for")
        if any(word in KEY_TYPES for word in stripped.split()[1:]):
            raise _refuse(
                'paste the key alone, without options in front of it (like command="…" or '
                'from="…"): it begins with its type, such as ssh-ed25519'
            )
        raise _refuse(
            "that is not an SSH public key Sizzle can use: it should begin with one of "
            + ", ".join(KEY_TYPES)
        )
    if len(words) < 2 or not _BASE64.fullmatch(words[1]):
        raise _refuse("the key's second part, the long AAAA… text, is missing or damaged")
    try:
        key = asyncssh.import_public_key(f"{kind} {words[1]}")
    except (asyncssh.KeyImportError, ValueError):
        raise _refuse("the key does not decode: copy the whole line again") from None
    algorithm = key.get_algorithm()
    if algorithm != kind:
        raise _refuse(f"the key says it is {kind} but holds a {algorithm} key")
    if kind == "ssh-rsa":
        bits = int(getattr(key.pyca_key, "key_size", 0))
        if bits < MIN_RSA_BITS:
            raise _refuse(
                f"an RSA key of {bits} bits is too weak: make one of at least {MIN_RSA_BITS} "
                "bits, or better an ed25519 key (ssh-keygen -t ed25519)",
                code="weak_ssh_key",
            )
    comment = words[2].strip() if len(words) > 2 else ""
    plain = _PLAIN_COMMENT.fullmatch(comment) and len(comment) <= MAX_COMMENT_LENGTH
    line = f"{kind} {words[1]}" + (f" {comment}" if plain else "")
    return PublicKey(algorithm=kind, line=line, fingerprint=key.get_fingerprint("sha256"))


# --- logging in --------------------------------------------------------------------------------

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_USERNAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Connect:
    """How a user logs in to their instance: the ssh command and a VS Code link."""

    host: str
    port: int
    username: str
    command: str
    vscode_uri: str


def connect_command(host: str, port: int, username: str) -> Connect | None:
    """The exact commands for an SSH address; None for an address that would not be safe to
    paste into a shell (a host or user name with anything but the characters such names have)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None and not _HOSTNAME.fullmatch(host):
        return None
    if not _USERNAME.fullmatch(username) or not 1 <= port <= 65535:
        return None
    command = f"ssh -p {port} {username}@{host}"
    authority_host = f"[{host}]" if isinstance(ip, ipaddress.IPv6Address) else host
    home = "/root" if username == "root" else f"/home/{username}"
    # VS Code opens a remote folder from `vscode://vscode-remote/<authority><path>` (the form
    # that landed for microsoft/vscode-remote-release#656, via microsoft/vscode@bdf1156), and
    # Remote-SSH's authority is `ssh-remote+<user>@<host>[:<port>]`, the port included
    # (microsoft/vscode#158088: `vscode-remote://ssh-remote+username@1.2.3.4:8022/path`).
    target = f"{username}@{authority_host}:{port}"
    vscode_uri = f"vscode://vscode-remote/ssh-remote+{quote(target, safe='@:[]')}{home}"
    return Connect(host=host, port=port, username=username, command=command, vscode_uri=vscode_uri)
