"""Sign-in tokens: a token checked once is remembered, yet its expiry holds at every use and a
changed byte is never taken for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sizzle.errors import Unauthorized
from sizzle.security import create_access_token, decode_access_token

SECRET = "a-secret-that-is-long-enough-for-hs256"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_remembered_token_still_expires() -> None:
    token = create_access_token("u1", secret=SECRET, now=NOW, lifetime=timedelta(minutes=5))
    assert decode_access_token(token, secret=SECRET, now=NOW).user_id == "u1"
    assert decode_access_token(token, secret=SECRET, now=NOW).user_id == "u1"
    with pytest.raises(Unauthorized) as refused:
        decode_access_token(token, secret=SECRET, now=NOW + timedelta(minutes=5))
    assert refused.value.code == "token_expired"


def test_a_remembered_token_is_no_key_for_another_secret_or_a_changed_token() -> None:
    token = create_access_token("u1", secret=SECRET, now=NOW, lifetime=timedelta(minutes=5))
    decode_access_token(token, secret=SECRET, now=NOW)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for other, secret in ((token, "another-secret-that-is-long-enough"), (tampered, SECRET)):
        with pytest.raises(Unauthorized) as refused:
            decode_access_token(other, secret=secret, now=NOW)
        assert refused.value.code == "invalid_token"
