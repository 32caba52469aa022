"""The Chats page and one chat's page: listed from the header, searched, renamed, deleted and
downloaded; hostile titles and messages stay text; nobody else's chat is found."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from sizzle.api.routers.openai import MAX_BODY_BYTES
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.services import conversations
from sizzle.state import AppState
from sizzle.web.routes.chats import WebChatIn, chat_request
from sizzle.web.routes.launch import carried_chat
from tests.helpers import create_session, log_in
from tests.web.pages import csrf_of, post_form, sign_in

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="alert(1)">'


async def demo_session(browser: httpx.AsyncClient, *, email: str) -> str:
    return str((await create_session(browser, auth=await log_in(browser, email=email)))["id"])


async def make_chat(
    browser: httpx.AsyncClient,
    state: AppState,
    *,
    session_id: str,
    title: str,
    answer: str = "Fine.",
    attached: dict[str, Any] | None = None,
) -> str:
    """A chat made as the live page's script makes one, with one saved exchange."""
    token = csrf_of(await browser.get("/chats"))
    made = await browser.post(
        "/chats",
        json={"title": title, "session_id": session_id},
        headers={"X-CSRF-Token": token},
    )
    assert made.status_code == 201, made.text
    chat_id = str(made.json()["id"])
    turn = state.chat_proxy.saver.begin(
        conversation_id=chat_id,
        session_id=session_id,
        model="llama3.1:8b",
        messages=[{"role": "user", "content": f"About {title}"}],
        attached=attached,
    )
    turn.observe({"choices": [{"delta": {"content": answer}}]})
    turn.finish("ok", prompt_tokens=2, completion=1)
    await state.chat_proxy.saver.flush()
    return chat_id


async def test_the_chats_page_lists_searches_and_keeps_hostile_titles_as_text(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    user = await sign_in(browser, db, clock=clock)
    session_id = await demo_session(browser, email=user.email)
    empty = await browser.get("/chats")
    assert 'href="/chats"' in empty.text and "No chats yet" in empty.text
    files = [{"name": HOSTILE, "kind": "pdf", "note": f"{HOSTILE}: 1 page, 9 characters"}]
    hostile_id = await make_chat(
        browser,
        state,
        session_id=session_id,
        title=HOSTILE,
        answer=HOSTILE,
        attached={"question": f"About {HOSTILE}", "files": files},
    )
    clock.advance(5)
    soup_id = await make_chat(browser, state, session_id=session_id, title="Tomato soup")
    page = (await browser.get("/chats")).text
    assert page.index(f"/chats/{soup_id}") < page.index(f"/chats/{hostile_id}")  # newest first
    assert HOSTILE not in page and "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    found = (await browser.get("/chats", params={"q": "tomato"})).text
    assert f"/chats/{soup_id}" in found and f"/chats/{hostile_id}" not in found
    assert "No chat has" in (await browser.get("/chats", params={"q": "zebra"})).text

    one = (await browser.get(f"/chats/{hostile_id}")).text
    assert HOSTILE not in one  # the title as text; the messages as JSON that cannot end a script
    data = re.search(r'<script type="application/json" id="chat-data">(.*?)</script>', one, re.S)
    assert data is not None
    question, answer = json.loads(data.group(1))["messages"]
    assert answer["content"] == HOSTILE and question["attached"]["files"] == files


async def test_rename_delete_and_download_a_chat(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    user = await sign_in(browser, db, clock=clock)
    session_id = await demo_session(browser, email=user.email)
    chat_id = await make_chat(browser, state, session_id=session_id, title="Draft")
    renamed = await post_form(browser, f"/chats/{chat_id}/rename", {"title": "Taxes 2026"})
    assert renamed.status_code == 303
    assert "Taxes 2026" in (await browser.get(f"/chats/{chat_id}")).text
    markdown = await browser.get(f"/chats/{chat_id}/export.md")
    assert 'filename="taxes-2026.md"' in markdown.headers["content-disposition"]
    assert "## You\n\nAbout Draft" in markdown.text and "## Assistant\n\nFine." in markdown.text
    exported = (await browser.get(f"/chats/{chat_id}/export.json")).json()
    assert exported["title"] == "Taxes 2026" and len(exported["messages"]) == 2
    deleted = await post_form(browser, f"/chats/{chat_id}/delete", {}, page="/chats")
    assert deleted.status_code == 303 and deleted.headers["location"] == "/chats"
    assert (await browser.get(f"/chats/{chat_id}")).status_code == 404
    async with db.read() as tx:
        assert await conversations.messages_of(tx, chat_id) == []


async def test_another_users_chat_is_not_found_on_any_page(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    user = await sign_in(browser, db, clock=clock)
    session_id = await demo_session(browser, email=user.email)
    chat_id = await make_chat(browser, state, session_id=session_id, title="Mine")
    browser.cookies.clear()
    await sign_in(browser, db, clock=clock)
    token = csrf_of(await browser.get("/chats"))
    headers = {"X-CSRF-Token": token}
    for path in ("", "/data.json", "/export.md", "/export.json"):
        assert (await browser.get(f"/chats/{chat_id}{path}")).status_code == 404, path
    for path, body in (("/settings", {"title": "x"}), ("/rename", None), ("/delete", None)):
        if body is None:
            response = await browser.post(
                f"/chats/{chat_id}{path}", data={"title": "x", "csrf_token": token}
            )
        else:
            response = await browser.post(f"/chats/{chat_id}{path}", json=body, headers=headers)
        assert response.status_code == 404, path
    # nor can a chat be saved into it from one's own session
    chat = await browser.post(
        f"/sessions/{'0' * 32}/chat",
        json={"messages": [{"role": "user", "content": "hi"}], "conversation_id": chat_id},
        headers=headers,
    )
    assert chat.status_code == 404
    assert "Mine" not in (await browser.get("/chats")).text


async def test_a_chats_settings_are_checked_kept_and_sent_with_each_message(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock, state: AppState
) -> None:
    user = await sign_in(browser, db, clock=clock)
    session_id = await demo_session(browser, email=user.email)
    chat_id = await make_chat(browser, state, session_id=session_id, title="Tuned")
    headers = {"X-CSRF-Token": csrf_of(await browser.get("/chats"))}
    settings = {"system_prompt": "Answer in French.", "temperature": 0.4, "max_tokens": 300}
    kept = await browser.post(f"/chats/{chat_id}/settings", json=settings, headers=headers)
    assert kept.status_code == 200, kept.text
    assert {name: kept.json()[name] for name in settings} == settings
    for bad in ({"temperature": 2.1}, {"max_tokens": 40_000}, {"temperature": "hot"}):
        refused = await browser.post(f"/chats/{chat_id}/settings", json=bad, headers=headers)
        assert refused.status_code == 422 and refused.json()["error"]["message"], bad
        ask = {"messages": [{"role": "user", "content": "hi"}], **bad}
        sent = await browser.post(f"/sessions/{session_id}/chat", json=ask, headers=headers)
        assert sent.status_code == 422, bad

    huge = {"messages": [{"role": "user", "content": "x" * (MAX_BODY_BYTES + 1)}]}
    too_big = await browser.post(f"/sessions/{session_id}/chat", json=huge, headers=headers)
    assert too_big.status_code == 413, too_big.text
    assert "fewer or smaller images" in too_big.json()["error"]["message"]

    request, dropped = chat_request(
        WebChatIn(messages=[{"role": "user", "content": "Bonjour"}], **settings),
        context_tokens=8192,
    )
    assert dropped == 0
    assert request["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Bonjour"},
    ]
    assert (request["temperature"], request["max_tokens"], request["stream"]) == (0.4, 300, True)
    plain, _ = chat_request(
        WebChatIn(messages=[{"role": "user", "content": "x"}]), context_tokens=8192
    )
    assert "temperature" not in plain


async def test_carry_on_opens_the_wizard_with_the_model_and_its_tier_then_the_chat(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await sign_in(browser, db, clock=clock, credit_usd="5")
    token = csrf_of(await browser.get("/chats"))
    made = await browser.post(
        "/chats", json={"model": "llama3.1:8b"}, headers={"X-CSRF-Token": token}
    )
    chat_id = made.json()["id"]
    page = (await browser.get(f"/chats/{chat_id}")).text
    wizard = f"/launch?step=confirm&amp;tier=starter&amp;model=llama3.1%3A8b&amp;chat={chat_id}"
    assert f'href="{wizard}"' in page and "Carry on: launch Llama 3.1 8B" in page
    confirm = await browser.get(wizard.replace("&amp;", "&"))
    assert f'name="chat" value="{chat_id}"' in confirm.text
    launched = await post_form(
        browser,
        "/launch",
        {"tier": "starter", "model": "llama3.1:8b", "chat": chat_id},
        page=wizard.replace("&amp;", "&"),
    )
    assert launched.status_code == 303, launched.text
    assert launched.headers["location"].endswith(f"?chat={chat_id}")
    assert carried_chat("../x?y") is None and carried_chat(chat_id) == chat_id  # ids only
