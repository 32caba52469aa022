"""The inbox API (newest first, paged, the unread count, marking read) and which kinds are
mailed (money-critical ones cannot be turned off); the account's export holds both, and
deleting the account erases them."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import Notification, NotificationOptOut
from sizzle.services.notifications import Kind, notify
from tests.helpers import PASSWORD, assert_error, log_in, make_user


async def tell(db: Database, user_id: str, clock: FakeClock, key: str, **extra: Any) -> str:
    async with db.transaction() as tx:
        await notify(
            tx,
            user_id=user_id,
            kind=extra.pop("kind", Kind.SESSION_READY),
            key=key,
            title=f"Title {key}",
            body="Body.",
            now=clock.now(),
            link="/sessions/x",
            **extra,
        )
        return str(await tx.scalar(select(Notification.id).where(Notification.key == key)))


async def user_with_inbox(
    client: httpx.AsyncClient, db: Database, clock: FakeClock, *, count: int = 3
) -> tuple[str, dict[str, str], list[str]]:
    """A signed-in user told `count` things, a minute apart; their ids, oldest first."""
    user = await make_user(db, now=clock.now())
    ids = []
    for number in range(count):
        ids.append(await tell(db, user.id, clock, f"{user.id}:{number}"))
        clock.advance(60)
    return user.id, await log_in(client, email=user.email), ids


async def test_the_inbox_is_newest_first_paged_with_the_unread_count(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    _, auth, ids = await user_with_inbox(client, db, clock)
    page = (await client.get("/api/v1/notifications?limit=2", headers=auth)).json()
    assert [n["id"] for n in page["items"]] == [ids[2], ids[1]]
    assert (page["total"], page["unread"]) == (3, 3)
    first = page["items"][0]
    assert first["kind"] == "session_ready" and first["link"] == "/sessions/x"
    assert first["read_at"] is None and first["mail_status"] == "pending"
    rest = (await client.get("/api/v1/notifications?limit=2&offset=2", headers=auth)).json()
    assert [n["id"] for n in rest["items"]] == [ids[0]]
    one = await client.get(f"/api/v1/notifications/{ids[0]}", headers=auth)
    assert one.status_code == 200 and one.json()["title"] == first["title"].replace(":2", ":0")


async def test_marking_some_then_all_read(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    _, auth, ids = await user_with_inbox(client, db, clock)
    some = await client.post("/api/v1/notifications/read", json={"ids": [ids[0]]}, headers=auth)
    assert some.json() == {"marked": 1, "unread": 2}
    again = await client.post("/api/v1/notifications/read", json={"ids": [ids[0]]}, headers=auth)
    assert again.json() == {"marked": 0, "unread": 2}
    everything = await client.post("/api/v1/notifications/read", json={}, headers=auth)
    assert everything.json() == {"marked": 2, "unread": 0}
    items = (await client.get("/api/v1/notifications", headers=auth)).json()["items"]
    assert all(n["read_at"] == clock.now().isoformat().replace("+00:00", "Z") for n in items)


async def test_another_users_notification_is_not_found_and_none_is_marked(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    _, owner, theirs = await user_with_inbox(client, db, clock, count=1)
    _, other, mine = await user_with_inbox(client, db, clock, count=1)
    assert_error(await client.get(f"/api/v1/notifications/{theirs[0]}", headers=other), 404)
    mixed = {"ids": [mine[0], theirs[0]]}
    refused = await client.post("/api/v1/notifications/read", json=mixed, headers=other)
    assert_error(refused, 404, "not_found")
    assert (await client.get("/api/v1/notifications", headers=other)).json()["unread"] == 1
    assert (await client.get("/api/v1/notifications", headers=owner)).json()["unread"] == 1


async def test_bad_input_is_a_clear_422(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    _, auth, _ = await user_with_inbox(client, db, clock, count=0)
    for body in ({"ids": "all"}, {"ids": ["a\x00b"]}, {"ids": ["x" * 65]}, {"every": True}):
        assert_error(await client.post("/api/v1/notifications/read", json=body, headers=auth), 422)
    assert_error(await client.get("/api/v1/notifications?limit=501", headers=auth), 422)


async def test_preferences_list_every_kind_and_turn_mail_off_and_on(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    _, auth, _ = await user_with_inbox(client, db, clock, count=0)
    seen = (await client.get("/api/v1/account/notifications", headers=auth)).json()
    assert {k["kind"] for k in seen["kinds"]} == {kind.value for kind in Kind}
    assert all(k["mailed"] for k in seen["kinds"]) and seen["still_running_every_hours"] == 1
    money = {k["kind"] for k in seen["kinds"] if not k["can_turn_off"]}
    assert money == {kind.value for kind in Kind if kind.money_critical}
    assert "always go out" in seen["money_critical_note"]
    changed = await client.put(
        "/api/v1/account/notifications",
        json={"mailed": {"still_running": False}, "still_running_every_hours": 4},
        headers=auth,
    )
    assert changed.status_code == 200, changed.text
    kinds = {k["kind"]: k["mailed"] for k in changed.json()["kinds"]}
    assert kinds["still_running"] is False and kinds["session_ready"] is True
    assert changed.json()["still_running_every_hours"] == 4
    back = await client.put(
        "/api/v1/account/notifications", json={"mailed": {"still_running": True}}, headers=auth
    )
    assert {k["kind"]: k["mailed"] for k in back.json()["kinds"]}["still_running"] is True
    assert back.json()["still_running_every_hours"] == 4  # left out: unchanged


async def test_money_critical_kinds_cannot_be_turned_off(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    _, auth, _ = await user_with_inbox(client, db, clock, count=0)
    refused = await client.put(
        "/api/v1/account/notifications",
        json={"mailed": {"still_running": False, "credit_low": False}},
        headers=auth,
    )
    error = assert_error(refused, 422, "money_critical")
    assert error["message"].startswith("“Running low” mails cannot be turned off.")
    seen = (await client.get("/api/v1/account/notifications", headers=auth)).json()
    assert all(k["mailed"] for k in seen["kinds"])  # and nothing else was changed either
    for body in (
        {"mailed": {"no_such_kind": False}},
        {"still_running_every_hours": 3},
        {"still_running_every_hours": "2"},
        {"mailed": {"still_running": "no"}},
    ):
        response = await client.put("/api/v1/account/notifications", json=body, headers=auth)
        assert_error(response, 422)


async def test_the_export_holds_the_inbox_and_deleting_the_account_erases_it(
    client: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    user_id, auth, ids = await user_with_inbox(client, db, clock, count=2)
    await client.put(
        "/api/v1/account/notifications", json={"mailed": {"session_ready": False}}, headers=auth
    )
    export = (await client.get("/api/v1/account/export", headers=auth)).json()
    assert sorted(n["id"] for n in export["notifications"]) == sorted(ids)
    assert export["notification_preferences"] == {
        "not_mailed": ["session_ready"],
        "still_running_every_hours": 1,
    }
    deleted = await client.request(
        "DELETE", "/api/v1/account", json={"password": PASSWORD}, headers=auth
    )
    assert deleted.status_code == 204, deleted.text
    async with db.read() as tx:
        for model in (Notification, NotificationOptOut):
            left = await tx.scalar(
                select(func.count()).select_from(model).where(model.user_id == user_id)
            )
            assert left == 0, model
