"""Saved chats, `/api/v1/conversations`, and their saving by the chat relay over real HTTP on
loopback (a fake Ollama node): a question and its answer saved as the answer streams, a reader
going away mid-answer, writes kept off the way to the first token, the size caps, search,
rename, settings, delete and export, and nobody else's chat reachable."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
from sqlalchemy import event

from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.services import conversations
from sizzle.services.carry_on import carry_on
from sizzle.state import AppState
from tests.api.test_chat_proxy import CHAT, content, events
from tests.api.workspace_stack import HELLO, MODEL_TAG, Stack, active_session
from tests.domain.test_images import data_url
from tests.helpers import (
    PASSWORD,
    assert_error,
    launch_active_session,
    log_in,
    make_user,
    me,
    sign_up,
)

API = "/api/v1/conversations"


async def new_chat(http: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    made = await http.post(API, json=body, headers=auth)
    assert made.status_code == 201, made.text
    return dict(made.json())


async def save_exchange(
    state: AppState, *, conversation_id: str, session_id: str, question: str, answer: str
) -> None:
    """A question and its answer saved by the relay's writer, as a chat would save them."""
    saver = state.chat_proxy.saver
    turn = saver.begin(
        conversation_id=conversation_id,
        session_id=session_id,
        model="llama3.1:8b",
        messages=[{"role": "user", "content": question}],
    )
    turn.observe({"choices": [{"delta": {"content": answer}}]})
    turn.finish("ok", prompt_tokens=3, completion=len(answer.split()))
    await saver.flush()


async def test_a_streamed_answer_is_saved_as_it_arrives_and_when_it_ends(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    chat = await new_chat(stack.http, auth, session_id=session_id)
    assert chat["title"] == "New chat" and chat["model"] == "llama3.1:8b"
    stack.node.hold_last_token = threading.Event()
    headers = {**auth, "X-Sizzle-Conversation": chat["id"]}
    request = {"model": "llama3.1-8b", "messages": HELLO, "stream": True}
    async with stack.http.stream("POST", CHAT, json=request, headers=headers) as response:
        lines = []
        async for line in response.aiter_lines():
            lines.append(line)
            if stack.node.chat_tokens_sent == 4 and not stack.node.hold_last_token.is_set():
                await asyncio.sleep(0.05)  # the fourth token relayed
                await stack.state.chat_proxy.saver.flush()  # the writer's next tick
                midway = (await stack.http.get(f"{API}/{chat['id']}", headers=auth)).json()
                stack.node.hold_last_token.set()
    assert content(events(lines)) == "Hello from the node."
    question, answer = midway["messages"]
    assert (question["role"], question["content"]) == ("user", HELLO[0]["content"])
    assert (answer["status"], answer["content"]) == ("streaming", "Hello from the node")
    await stack.state.chat_proxy.saver.flush()
    done = (await stack.http.get(f"{API}/{chat['id']}", headers=auth)).json()
    assert done["title"] == HELLO[0]["content"]  # named after its first question
    answer = done["messages"][1]
    assert (answer["status"], answer["content"]) == ("done", "Hello from the node.")
    assert (answer["prompt_tokens"], answer["completion_tokens"]) == (5, 5)
    assert done["session_id"] == session_id and done["size_bytes"] == len(
        HELLO[0]["content"] + "Hello from the node."
    )


async def test_a_reader_going_away_mid_answer_leaves_what_had_arrived(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    chat = await new_chat(stack.http, auth, session_id=session_id)
    stack.node.chat_endless, stack.node.chat_token_seconds = True, 0.01
    headers = {**auth, "X-Sizzle-Conversation": chat["id"]}
    request = {"model": "llama3.1-8b", "messages": HELLO, "stream": True}
    async with stack.http.stream("POST", CHAT, json=request, headers=headers) as response:
        async for _line in response.aiter_lines():
            if stack.node.chat_tokens_sent >= 8:
                break  # the page was reloaded
    await asyncio.wait_for(asyncio.to_thread(stack.node.chat_cut_off.wait, 5), 6)
    await asyncio.sleep(0.1)
    await stack.state.chat_proxy.saver.flush()
    answer = (await stack.http.get(f"{API}/{chat['id']}", headers=auth)).json()["messages"][1]
    assert answer["status"] == "stopped"
    assert answer["content"].startswith("Hello from the node. more more")


async def test_saving_writes_nothing_before_the_first_token(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    await active_session(stack, auth=auth)
    chat = await new_chat(stack.http, auth)
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    engine = stack.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        headers = {**auth, "X-Sizzle-Conversation": chat["id"]}
        request = {"model": "llama3.1-8b", "messages": HELLO, "stream": True}
        async with stack.http.stream("POST", CHAT, json=request, headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    break
            before_first_token = list(statements)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert any("FROM conversations" in s for s in before_first_token)  # the room checked
    assert not [s for s in before_first_token if "conversation" in s and "SELECT" not in s]
    await stack.state.chat_proxy.saver.flush()
    saved = (await stack.http.get(f"{API}/{chat['id']}", headers=auth)).json()["messages"]
    assert [m["role"] for m in saved] == ["user", "assistant"]  # written afterwards


async def test_a_whole_answer_is_saved_too(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    await active_session(stack, auth=auth)
    chat = await new_chat(stack.http, auth)
    headers = {**auth, "X-Sizzle-Conversation": chat["id"]}
    answer = await stack.http.post(
        CHAT, json={"model": "llama3.1-8b", "messages": HELLO}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    await stack.state.chat_proxy.saver.flush()
    saved = (await stack.http.get(f"{API}/{chat['id']}", headers=auth)).json()["messages"]
    assert [(m["role"], m["content"], m["status"]) for m in saved] == [
        ("user", HELLO[0]["content"], "done"),
        ("assistant", "Hello from the node.", "done"),
    ]


async def test_a_full_chat_and_full_chats_are_refused_with_a_sentence(stack: Stack) -> None:
    state = stack.state
    state.settings.chat_max_bytes_per_conversation = 1_000
    state.settings.chat_max_bytes_per_user = 1_500
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    client = stack.http
    chat = await new_chat(client, auth, session_id=session_id)
    await save_exchange(
        state, conversation_id=chat["id"], session_id=session_id, question="q", answer="a" * 999
    )
    headers = {**auth, "X-Sizzle-Conversation": chat["id"]}
    full = await client.post(
        CHAT, json={"model": "llama3.1-8b", "messages": HELLO}, headers=headers
    )
    body = assert_error(full, 413, "chat_full")
    assert "Start a new chat" in body["message"]
    other = await new_chat(client, auth)
    await save_exchange(
        state, conversation_id=other["id"], session_id=session_id, question="q", answer="b" * 600
    )
    refused = await client.post(API, json={}, headers=auth)
    assert "Delete some old chats" in assert_error(refused, 413, "chats_full")["message"]


async def test_search_rename_settings_delete_and_export(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock
) -> None:
    user = await make_user(state.db, now=clock.now(), credit_usd="2")
    auth = await log_in(client, email=user.email)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    soup = await new_chat(client, auth, session_id=session_id)
    await save_exchange(
        state,
        conversation_id=soup["id"],
        session_id=session_id,
        question="How do I make 100% tomato soup?",
        answer="Simmer the **tomatoes**.",
    )
    clock.advance(5)
    other = await new_chat(client, auth, title="Taxes")
    listed = (await client.get(API, headers=auth)).json()
    assert [c["id"] for c in listed["items"]] == [other["id"], soup["id"]]
    found = (await client.get(API, params={"q": "TOMATOES"}, headers=auth)).json()
    assert [c["id"] for c in found["items"]] == [soup["id"]] and found["total"] == 1
    percent = (await client.get(API, params={"q": "100%"}, headers=auth)).json()
    assert percent["total"] == 1  # a % is a character, not a wildcard
    assert (await client.get(API, params={"q": "tax"}, headers=auth)).json()["total"] == 1

    changed = await client.patch(
        f"{API}/{soup['id']}",
        json={"title": "Soup", "system_prompt": "Answer briefly.", "temperature": 0.3},
        headers=auth,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["title"], changed.json()["temperature"]) == ("Soup", 0.3)
    bad_settings = (
        {"temperature": 2.5},
        {"temperature": False},
        {"max_tokens": 0},
        {"max_tokens": True},
        {"system_prompt": "x\x00"},
    )
    for bad in bad_settings:
        assert_error(await client.patch(f"{API}/{soup['id']}", json=bad, headers=auth), 422)

    markdown = await client.get(f"{API}/{soup['id']}/export", headers=auth)
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert 'filename="soup.md"' in markdown.headers["content-disposition"]
    assert markdown.text.startswith("# Soup\n")
    assert "## You\n\nHow do I make 100% tomato soup?" in markdown.text
    assert "## Assistant\n\nSimmer the **tomatoes**." in markdown.text
    assert "Answer briefly." in markdown.text
    exported = await client.get(
        f"{API}/{soup['id']}/export", params={"format": "json"}, headers=auth
    )
    data = json.loads(exported.text)
    assert [m["content"] for m in data["messages"]][1] == "Simmer the **tomatoes**."

    assert (await client.delete(f"{API}/{soup['id']}", headers=auth)).status_code == 204
    assert_error(await client.get(f"{API}/{soup['id']}", headers=auth), 404)
    assert (await client.get(API, headers=auth)).json()["total"] == 1


async def test_another_users_chat_is_not_found_for_saving_either(stack: Stack) -> None:
    owner = await sign_up(stack.http)
    chat = await new_chat(stack.http, owner)
    other = await sign_up(stack.http)
    await active_session(stack, auth=other)
    headers = {**other, "X-Sizzle-Conversation": chat["id"]}
    request = {"model": "llama3.1-8b", "messages": HELLO, "stream": True}
    assert_error(await stack.http.post(CHAT, json=request, headers=headers), 404)
    assert [kind for kind, _ in stack.node.requests if kind == "chat"] == []


async def test_the_account_export_holds_my_chats_and_deletion_erases_them(
    client: httpx.AsyncClient, state: AppState, clock: FakeClock, db: Database
) -> None:
    user = await make_user(state.db, now=clock.now(), credit_usd="2")
    auth = await log_in(client, email=user.email)
    session_id = await launch_active_session(client, state, clock, auth=auth)
    chat = await new_chat(client, auth, session_id=session_id)
    await save_exchange(
        state, conversation_id=chat["id"], session_id=session_id, question="hi", answer="hello"
    )
    exported = (await client.get("/api/v1/account/export", headers=auth)).json()
    [saved] = exported["conversations"]
    assert [m["content"] for m in saved["messages"]] == ["hi", "hello"]
    gone = await client.request(
        "DELETE", "/api/v1/account", json={"password": PASSWORD}, headers=auth
    )
    assert gone.status_code == 204, gone.text
    async with db.read() as tx:
        rows, total = await conversations.list_conversations(
            tx, user_id=user.id, query=None, limit=10, offset=0
        )
        assert (rows, total) == ([], 0)
        assert await conversations.messages_of(tx, chat["id"]) == []


async def ask_in_chat(stack: Stack, auth: dict[str, str], chat_id: str, question: str) -> None:
    """The next question of a saved chat, sent with the whole chat so far (as the page does)."""
    saved = (await stack.http.get(f"{API}/{chat_id}", headers=auth)).json()["messages"]
    history = [{"role": m["role"], "content": m["content"]} for m in saved]
    request = {
        "model": "llama3.1-8b",
        "messages": [*history, {"role": "user", "content": question}],
        "stream": True,
    }
    headers = {**auth, "X-Sizzle-Conversation": chat_id}
    async with stack.http.stream("POST", CHAT, json=request, headers=headers) as response:
        assert response.status_code == 200
        assert events([line async for line in response.aiter_lines()])[-1] == "[DONE]"
    await stack.state.chat_proxy.saver.flush()


async def test_a_chat_outlives_pause_resume_and_stop_and_carries_on_in_a_new_session(
    stack: Stack,
) -> None:
    auth = await sign_up(stack.http)
    first = await active_session(stack, auth=auth)
    chat = await new_chat(stack.http, auth, session_id=first)
    owner = (await me(stack.http, auth=auth))["id"]
    await ask_in_chat(stack, auth, chat["id"], "One")
    for action in ("pause", "resume"):
        acted = await stack.http.post(f"/api/v1/sessions/{first}/{action}", headers=auth)
        assert acted.status_code == 200, acted.text
    await ask_in_chat(stack, auth, chat["id"], "Two")
    async with stack.state.db.read() as tx:
        here = await carry_on(tx, user_id=owner, chat_id=chat["id"], model=MODEL_TAG)
    assert here is not None and here.running and here.href == f"/sessions/{first}?chat={chat['id']}"

    assert (
        await stack.http.post(f"/api/v1/sessions/{first}/stop", headers=auth)
    ).status_code == 200
    kept = (await stack.http.get(f"{API}/{chat['id']}", headers=auth)).json()
    assert [m["content"] for m in kept["messages"] if m["role"] == "user"] == ["One", "Two"]
    async with stack.state.db.read() as tx:
        elsewhere = await carry_on(tx, user_id=owner, chat_id=chat["id"], model=MODEL_TAG)
    assert elsewhere is not None and not elsewhere.running
    assert elsewhere.href == (
        f"/launch?step=confirm&tier=starter&model=llama3.1%3A8b&chat={chat['id']}"
    )

    second = await active_session(stack, auth=auth)  # the launch the link leads to
    await ask_in_chat(stack, auth, chat["id"], "Three")
    sent = [body for kind, body in stack.node.requests if kind == "chat"][-1]
    assert [m["content"] for m in sent["messages"] if m["role"] == "user"] == [
        "One",
        "Two",
        "Three",
    ]
    carried = (await stack.http.get(f"{API}/{chat['id']}", headers=auth)).json()
    assert carried["session_id"] == second and len(carried["messages"]) == 6
    assert {m["status"] for m in carried["messages"]} == {"done"}


async def test_an_image_is_kept_counted_toward_the_cap_and_exported_in_words(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    await active_session(stack, auth=auth, model="gemma3-4b")
    chat = await new_chat(stack.http, auth)
    headers = {**auth, "X-Sizzle-Conversation": chat["id"]}
    photo = data_url(1024, 768, "JPEG")
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": photo}},
    ]
    ask = {"model": "gemma3-4b", "messages": [{"role": "user", "content": parts}]}
    assert (await stack.http.post(CHAT, json=ask, headers=headers)).status_code == 200
    await stack.state.chat_proxy.saver.flush()
    saved = (await stack.http.get(f"{API}/{chat['id']}", headers=auth)).json()
    assert saved["messages"][0]["parts"] == parts
    assert saved["size_bytes"] == len("What is this?") + len(photo) + len("Hello from the node.")

    markdown = (await stack.http.get(f"{API}/{chat['id']}/export", headers=auth)).text
    assert "## You\n\n[image: 1024×768 JPEG]\n\nWhat is this?\n" in markdown
    assert "base64" not in markdown
    exported = await stack.http.get(
        f"{API}/{chat['id']}/export", params={"format": "json"}, headers=auth
    )
    assert json.loads(exported.text)["messages"][0]["parts"] == parts

    # room for another question's text, not for its image too
    stack.state.settings.chat_max_bytes_per_conversation = saved["size_bytes"] + len(photo) - 1
    full = await stack.http.post(CHAT, json=ask, headers=headers)
    assert "This chat has reached its limit" in assert_error(full, 413, "chat_full")["message"]
    text_only = {"model": "gemma3-4b", "messages": [{"role": "user", "content": "And now?"}]}
    assert (await stack.http.post(CHAT, json=text_only, headers=headers)).status_code == 200
    assert len([kind for kind, _ in stack.node.requests if kind == "chat"]) == 2
