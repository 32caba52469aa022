"""Sign-up, sign-in, who am I, and every way a token can be refused."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
from sqlalchemy import select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import User
from sizzle.security import create_access_token
from sizzle.settings import Settings
from tests.helpers import PASSWORD, assert_error, bearer, fresh_email, log_in, me, sign_up

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"


async def test_register_answers_201_with_the_user_and_a_token(client: httpx.AsyncClient) -> None:
    email = fresh_email()
    response = await client.post(
        REGISTER,
        json={"email": email, "password": PASSWORD, "name": "Ada", "accept_terms": True},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"]
    assert body["user"]["email"] == email
    assert body["user"]["name"] == "Ada"


async def test_me_shows_a_new_user_on_the_free_plan_with_the_signup_free_minutes(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    email = fresh_email()
    body = await me(client, auth=await sign_up(client, email=email))
    assert body["id"]
    assert body["email"] == email
    assert body["plan"] == "free"
    assert body["is_admin"] is False
    assert body["free_minutes"] == settings.free_minutes
    assert body["balance_usd"] == "0.00"


async def test_passwords_are_stored_as_argon2_hashes(
    client: httpx.AsyncClient, db: Database
) -> None:
    email = fresh_email()
    await sign_up(client, email=email)
    async with db.transaction() as tx:
        stored = await tx.scalar(select(User.password_hash).where(User.email == email))
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_login_returns_a_bearer_token_that_opens_me(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    email = fresh_email()
    await sign_up(client, email=email)
    response = await client.post(LOGIN, json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_minutes * 60
    assert (await me(client, auth=bearer(body["access_token"])))["email"] == email


async def test_email_is_case_insensitive_for_login(client: httpx.AsyncClient) -> None:
    await sign_up(client, email="Mixed.Case@Example.com")
    auth = await log_in(client, email="MIXED.case@example.COM")
    assert (await me(client, auth=auth))["email"] == "mixed.case@example.com"


async def test_a_taken_email_is_409(client: httpx.AsyncClient) -> None:
    email = fresh_email()
    await sign_up(client, email=email)
    again = await client.post(
        REGISTER, json={"email": email.upper(), "password": PASSWORD, "accept_terms": True}
    )
    assert_error(again, 409, "email_taken")


async def test_a_short_password_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        REGISTER, json={"email": fresh_email(), "password": "x7!k", "accept_terms": True}
    )
    assert "8 characters" in assert_error(response, 422, "weak_password")["message"]


async def test_a_common_password_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        REGISTER, json={"email": fresh_email(), "password": "password1", "accept_terms": True}
    )
    assert_error(response, 422, "weak_password")


async def test_a_password_equal_to_the_email_is_422(client: httpx.AsyncClient) -> None:
    email = fresh_email()
    response = await client.post(
        REGISTER, json={"email": email, "password": email, "accept_terms": True}
    )
    assert_error(response, 422, "weak_password")


async def test_an_invalid_email_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(REGISTER, json={"email": "not-an-email", "password": PASSWORD})
    assert_error(response, 422, "validation_error")


async def test_an_address_must_be_one_plain_address_everywhere(client: httpx.AsyncClient) -> None:
    for typed in (
        "a@evil.example.com, victim@corp.example.com",
        "a@evil.example.com\r\nBcc: victim@corp.example.com",
        "<b>x</b>@example.com",
        "Victim <victim@corp.example.com>",
    ):
        for path, body in (
            (REGISTER, {"email": typed, "password": PASSWORD}),
            (LOGIN, {"email": typed, "password": PASSWORD}),
            ("/api/v1/auth/password-reset", {"email": typed}),
        ):
            refused = await client.post(path, json=body)
            assert_error(refused, 422, "validation_error")
            assert "not an email address" in refused.json()["error"]["message"]


async def test_register_refuses_unknown_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        REGISTER, json={"email": fresh_email(), "password": PASSWORD, "is_admin": True}
    )
    assert_error(response, 422, "validation_error")


async def test_a_wrong_password_is_401(client: httpx.AsyncClient) -> None:
    email = fresh_email()
    await sign_up(client, email=email)
    response = await client.post(LOGIN, json={"email": email, "password": "not the password"})
    assert_error(response, 401, "invalid_credentials")


async def test_an_unknown_email_is_401_with_the_same_message_as_a_wrong_password(
    client: httpx.AsyncClient,
) -> None:
    email = fresh_email()
    await sign_up(client, email=email)
    wrong = await client.post(LOGIN, json={"email": email, "password": "not the password"})
    unknown = await client.post(LOGIN, json={"email": fresh_email(), "password": PASSWORD})
    assert assert_error(unknown, 401, "invalid_credentials") == wrong.json()["error"]


async def test_me_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(ME), 401, "not_signed_in")


async def test_me_with_another_auth_scheme_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get(ME, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_error(response, 401)


async def test_me_with_a_garbage_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(ME, headers=bearer("not.a.jwt")), 401, "invalid_token")


async def test_a_token_signed_with_another_key_is_401(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    forged = create_access_token(
        "someone",
        secret="some-other-secret-that-is-long-enough",
        now=clock.now(),
        lifetime=timedelta(hours=1),
    )
    assert_error(await client.get(ME, headers=bearer(forged)), 401, "invalid_token")


async def test_a_token_for_an_unknown_user_is_401(
    client: httpx.AsyncClient, clock: FakeClock, settings: Settings
) -> None:
    token = create_access_token(
        "0" * 32, secret=settings.resolved_secret_key, now=clock.now(), lifetime=timedelta(hours=1)
    )
    assert_error(await client.get(ME, headers=bearer(token)), 401, "invalid_token")


async def test_a_token_without_a_subject_is_401(
    client: httpx.AsyncClient, clock: FakeClock, settings: Settings
) -> None:
    exp = int((clock.now() + timedelta(hours=1)).timestamp())
    token = jwt.encode({"exp": exp}, settings.resolved_secret_key, algorithm="HS256")
    assert_error(await client.get(ME, headers=bearer(token)), 401, "invalid_token")


async def test_a_token_stops_working_when_it_expires(
    client: httpx.AsyncClient, clock: FakeClock, settings: Settings
) -> None:
    auth = await sign_up(client)
    clock.advance(settings.access_token_minutes * 60 - 1)
    assert (await client.get(ME, headers=auth)).status_code == 200
    clock.advance(1)
    assert_error(await client.get(ME, headers=auth), 401, "token_expired")
