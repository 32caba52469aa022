"""The workspace proxy, `/v1/chat/completions`, over real HTTP on loopback: Sizzle served by
uvicorn, the session's GPU a fake Ollama node speaking Ollama's OpenAI-compatible API.

Streaming chunk by chunk, whole answers, errors mid-stream, a node that drops the
connection, a client that goes away (the node must stop generating), who may chat with
which session, and the counting of every request on the session. The node stands behind a
proxy that wants its token, so every chat here also shows the token reaching it."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from sqlalchemy import event

from tests.api.workspace_stack import HELLO, MODEL_TAG, Stack, active_session, metrics
from tests.helpers import act, assert_error, sign_up

CHAT = "/v1/chat/completions"


def events(lines: list[str]) -> list[Any]:
    """The `data:` payloads of an SSE body: JSON objects, or the string "[DONE]"."""
    payloads: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


def content(payloads: list[Any]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for chunk in payloads
        if isinstance(chunk, dict)
        for choice in chunk.get("choices", [])
    )


async def test_a_streamed_answer_reaches_the_client_before_the_node_has_finished(
    stack: Stack,
) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    stack.node.hold_last_token = threading.Event()
    lines: list[str] = []
    async with stack.http.stream(
        "POST", CHAT, json={"model": "llama3.1-8b", "messages": HELLO, "stream": True}, headers=auth
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            lines.append(line)
            if line.startswith("data: {") and not stack.node.hold_last_token.is_set():
                # The first token is here while the node still holds back its last one.
                assert stack.node.chat_tokens_sent < len(stack.node.reply)
                stack.node.hold_last_token.set()
    payloads = events(lines)
    assert payloads[-1] == "[DONE]"
    assert content(payloads) == "Hello from the node."
    assert not any(chunk.get("usage") for chunk in payloads[:-1])  # not asked for, not passed on
    upstream = [body for kind, body in stack.node.requests if kind == "chat"][-1]
    assert upstream["model"] == MODEL_TAG
    assert upstream["stream_options"] == {"include_usage": True}
    counted = await metrics(stack, auth=auth, session_id=session_id)
    assert counted["requests"] == counted["succeeded"] == 1
    assert counted["prompt_tokens"] == 5 and counted["completion_tokens"] == 5
    assert counted["median_time_to_first_token_ms"] is not None
    assert counted["tokens_per_second"] is not None and counted["tokens_per_second"] > 0


async def test_chats_reuse_one_connection_to_the_node(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    await active_session(stack, auth=auth)
    request = {"model": "llama3.1-8b", "messages": HELLO, "stream": True}
    for _ in range(3):
        async with stack.http.stream("POST", CHAT, json=request, headers=auth) as response:
            assert events([line async for line in response.aiter_lines()])[-1] == "[DONE]"
    whole = await stack.http.post(CHAT, json={**request, "stream": False}, headers=auth)
    assert whole.status_code == 200, whole.text
    # an answer read to its end leaves its connection open: no new connection per chat
    assert len(stack.chat_clients) == 4
    assert len(set(stack.chat_clients)) == 1


async def test_a_chat_checks_the_caller_and_finds_the_session_in_one_transaction(
    stack: Stack,
) -> None:
    auth = await sign_up(stack.http)
    await active_session(stack, auth=auth)
    begun: list[object] = []

    def count(connection: object) -> None:
        begun.append(connection)

    engine = stack.state.db.engine.sync_engine
    event.listen(engine, "begin", count)
    try:
        for stream in (True, False):
            request = {"model": "llama3.1-8b", "messages": HELLO, "stream": stream}
            response = await stack.http.post(CHAT, json=request, headers=auth)
            assert response.status_code == 200, response.text
    finally:
        event.remove(engine, "begin", count)
    assert len(begun) == 2  # one each: each round trip before the node is a first token later


async def test_the_usage_chunk_is_passed_on_when_the_client_asks_for_it(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    await active_session(stack, auth=auth)
    request = {
        "model": "llama3.1-8b",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with stack.http.stream("POST", CHAT, json=request, headers=auth) as response:
        payloads = events([line async for line in response.aiter_lines()])
    usage = [chunk["usage"] for chunk in payloads[:-1] if chunk.get("usage")]
    assert usage == [{"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}]


async def test_a_whole_answer_and_its_tokens(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    response = await stack.http.post(
        CHAT, json={"model": MODEL_TAG, "messages": HELLO, "temperature": 0.2}, headers=auth
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "Hello from the node."
    upstream = [body for kind, body in stack.node.requests if kind == "chat"][-1]
    assert upstream["temperature"] == 0.2  # what Sizzle does not read goes through as sent
    counted = await metrics(stack, auth=auth, session_id=session_id)
    assert (counted["requests"], counted["completion_tokens"], counted["prompt_tokens"]) == (
        1,
        5,
        5,
    )
    assert counted["median_time_to_first_token_ms"] is None  # a whole answer has no first token


async def test_an_error_mid_stream_reaches_the_client_and_is_counted(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    stack.node.chat_error_after = 2
    async with stack.http.stream(
        "POST", CHAT, json={"model": "llama3.1-8b", "messages": HELLO, "stream": True}, headers=auth
    ) as response:
        assert response.status_code == 200
        payloads = events([line async for line in response.aiter_lines()])
    assert content(payloads) == "Hello from"
    assert payloads[-1]["error"]["message"] == "model runner has unexpectedly stopped"
    counted = await metrics(stack, auth=auth, session_id=session_id)
    assert (counted["requests"], counted["failed"], counted["succeeded"]) == (1, 1, 0)


async def test_a_node_that_drops_the_connection_ends_the_stream_with_an_error(
    stack: Stack,
) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    stack.node.chat_drop_after = 3
    async with stack.http.stream(
        "POST", CHAT, json={"model": "llama3.1-8b", "messages": HELLO, "stream": True}, headers=auth
    ) as response:
        payloads = events([line async for line in response.aiter_lines()])
    assert content(payloads) == "Hello from the"
    assert "[DONE]" not in payloads
    assert payloads[-1]["error"]["code"] == "upstream_error"
    counted = await metrics(stack, auth=auth, session_id=session_id)
    assert counted["failed"] == 1


async def test_a_client_that_goes_away_stops_the_generation_on_the_node(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    stack.node.chat_endless = True
    stack.node.chat_token_seconds = 0.01
    received = 0
    async with stack.http.stream(
        "POST", CHAT, json={"model": "llama3.1-8b", "messages": HELLO, "stream": True}, headers=auth
    ) as response:
        async for line in response.aiter_lines():
            received += line.startswith("data: {")
            if received == 3:
                break  # leaving the block closes the connection
    for _ in range(500):  # the node notices within a few token times; wait at most 5 s
        if stack.node.chat_cut_off.is_set():
            break
        await asyncio.sleep(0.01)
    assert stack.node.chat_cut_off.is_set()
    sent = stack.node.chat_tokens_sent
    await asyncio.sleep(0.1)
    assert stack.node.chat_tokens_sent == sent  # generation has stopped
    for _ in range(200):
        counted = await metrics(stack, auth=auth, session_id=session_id)
        if counted["requests"]:
            break
        await asyncio.sleep(0.01)
    assert (counted["requests"], counted["cancelled"]) == (1, 1)


async def test_a_client_that_stops_reading_is_let_go_and_the_node_stops(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    stack.node.chat_endless = True
    stack.node.endless_token = "x" * 65_536  # fills the buffers between quickly
    async with stack.http.stream(
        "POST", CHAT, json={"model": "llama3.1-8b", "messages": HELLO, "stream": True}, headers=auth
    ) as response:
        lines = response.aiter_lines()  # held, not closed: the connection stays open
        while not (await anext(lines)).startswith("data: {"):
            pass  # read up to one event, then stop reading
        for _ in range(1000):  # buffers fill, the stall limit passes: at most 10 s in all
            if stack.node.chat_cut_off.is_set():
                break
            await asyncio.sleep(0.01)
        assert stack.node.chat_cut_off.is_set()
        assert lines is not None
    for _ in range(200):
        counted = await metrics(stack, auth=auth, session_id=session_id)
        if counted["requests"]:
            break
        await asyncio.sleep(0.01)
    assert counted["cancelled"] == 1


async def test_the_session_header_picks_the_session(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    response = await stack.http.post(
        CHAT, json={"messages": HELLO}, headers={**auth, "X-Sizzle-Session": session_id}
    )
    assert response.status_code == 200, response.text


async def test_another_users_session_is_not_found(stack: Stack) -> None:
    owner = await sign_up(stack.http)
    session_id = await active_session(stack, auth=owner)
    stranger = await sign_up(stack.http)
    by_header = await stack.http.post(
        CHAT, json={"messages": HELLO}, headers={**stranger, "X-Sizzle-Session": session_id}
    )
    assert_error(by_header, 404)
    by_model = await stack.http.post(
        CHAT, json={"model": "llama3.1-8b", "messages": HELLO}, headers=stranger
    )
    assert_error(by_model, 404, "model_not_found")
    metrics_of_theirs = await stack.http.get(
        f"/api/v1/sessions/{session_id}/metrics", headers=stranger
    )
    assert_error(metrics_of_theirs, 404)


async def test_a_paused_session_is_409_and_the_node_is_not_asked(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    paused = await act(stack.http, auth=auth, session_id=session_id, action="pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["workspace"]["chat_available"] is False
    before = len(stack.node.requests)
    response = await stack.http.post(
        CHAT, json={"model": "llama3.1-8b", "messages": HELLO, "stream": True}, headers=auth
    )
    assert "resume" in assert_error(response, 409, "session_not_active")["message"]
    assert len(stack.node.requests) == before


async def test_a_model_none_of_my_sessions_runs_is_404(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    await active_session(stack, auth=auth)
    response = await stack.http.post(
        CHAT, json={"model": "mistral:7b", "messages": HELLO}, headers=auth
    )
    assert_error(response, 404, "model_not_found")


async def test_a_refusal_by_the_node_keeps_its_status(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    await active_session(stack, auth=auth)
    stack.node.loaded.clear()  # the node lost the model: it answers 404
    for stream in (False, True):
        response = await stack.http.post(
            CHAT, json={"model": "llama3.1-8b", "messages": HELLO, "stream": stream}, headers=auth
        )
        error = assert_error(response, 404, "model_not_found")
        assert "not found, try pulling it first" in error["message"]


async def test_bad_requests_are_refused_before_the_node(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    await active_session(stack, auth=auth)
    before = len(stack.node.requests)
    bad_bodies: list[Any] = [
        b"{not json",
        b"[1, 2]",
        json.dumps({"model": "llama3.1-8b"}).encode(),
        json.dumps({"model": "llama3.1-8b", "messages": []}).encode(),
        json.dumps({"model": "llama3.1-8b", "messages": HELLO, "stream": "yes"}).encode(),
    ]
    for body in bad_bodies:
        response = await stack.http.post(
            CHAT, content=body, headers={**auth, "Content-Type": "application/json"}
        )
        assert_error(response, 422)
    too_big = await stack.http.post(
        CHAT,
        json={"model": "llama3.1-8b", "messages": [{"role": "user", "content": "x" * 9_000_000}]},
        headers=auth,
    )
    assert_error(too_big, 413)
    assert len(stack.node.requests) == before
    assert_error(await stack.http.post(CHAT, json={"messages": HELLO}), 401)


async def test_v1_models_lists_the_models_of_my_active_sessions(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    empty = await stack.http.get("/v1/models", headers=auth)
    assert empty.json() == {"object": "list", "data": []}
    session_id = await active_session(stack, auth=auth)
    listed = (await stack.http.get("/v1/models", headers=auth)).json()
    assert [(m["id"], m["session_id"]) for m in listed["data"]] == [(MODEL_TAG, session_id)]
    assert listed["data"][0]["object"] == "model"
