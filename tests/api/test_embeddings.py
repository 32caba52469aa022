"""`POST /v1/embeddings` over real HTTP on loopback, to a session running an embedding model on
the fake Ollama node: the vectors, `dimensions` and base64 as OpenAI clients ask for them, the
counting, and the refusals (a chat model asked for embeddings, an embedding model asked to
chat, bad bodies)."""

from __future__ import annotations

import base64
import math
import struct

from sizzle.clock import FakeClock, to_ms
from sizzle.db.models import GpuSession
from tests.api.workspace_stack import EMBEDDING_TAG, HELLO, Stack, active_session, metrics
from tests.helpers import assert_error, sign_up

EMBEDDINGS = "/v1/embeddings"


async def embedding_session(stack: Stack, auth: dict[str, str]) -> str:
    return await active_session(stack, auth=auth, model="nomic-embed-text", chats=False)


async def test_texts_become_vectors_counted_on_the_session(stack: Stack, clock: FakeClock) -> None:
    auth = await sign_up(stack.http)
    session_id = await embedding_session(stack, auth)
    clock.advance(600)
    response = await stack.http.post(
        EMBEDDINGS,
        json={"model": "nomic-embed-text", "input": ["the sky is blue", "grass is green"]},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "list"
    assert [entry["index"] for entry in answer["data"]] == [0, 1]
    vectors = [entry["embedding"] for entry in answer["data"]]
    assert all(len(v) == stack.node.embedding_length for v in vectors)
    assert vectors[0] != vectors[1]
    assert answer["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    upstream = [body for kind, body in stack.node.requests if kind == "embeddings"][-1]
    assert upstream == {"model": EMBEDDING_TAG, "input": ["the sky is blue", "grass is green"]}
    counted = await metrics(stack, auth=auth, session_id=session_id)
    assert (counted["requests"], counted["succeeded"], counted["prompt_tokens"]) == (1, 1, 7)
    await stack.state.activity.flush()
    async with stack.state.db.read() as tx:
        session = await tx.get(GpuSession, session_id)
    assert session is not None
    assert session.last_activity_ms == to_ms(clock.now())  # a use, for the idle limit


async def test_dimensions_and_base64_are_what_openai_clients_get(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    await embedding_session(stack, auth)
    full = await stack.http.post(EMBEDDINGS, json={"input": "one text"}, headers=auth)
    assert full.status_code == 404  # no model and no session header: Sizzle cannot pick one
    body = {"model": EMBEDDING_TAG, "input": "one text", "dimensions": 4}
    short = await stack.http.post(
        EMBEDDINGS, json={**body, "encoding_format": "base64"}, headers=auth
    )
    assert short.status_code == 200, short.text
    packed = base64.b64decode(short.json()["data"][0]["embedding"])
    numbers = struct.unpack("<4f", packed)
    assert math.isclose(math.sqrt(sum(x * x for x in numbers)), 1.0, rel_tol=1e-5)
    # the node was asked for floats; a node that ignores `dimensions` is shortened here alike
    assert "encoding_format" not in stack.node.requests[-1][1]
    floats = await stack.http.post(EMBEDDINGS, json=body, headers=auth)
    assert [round(x, 5) for x in floats.json()["data"][0]["embedding"]] == [
        round(x, 5) for x in numbers
    ]
    too_many = await stack.http.post(EMBEDDINGS, json={**body, "dimensions": 9}, headers=auth)
    message = assert_error(too_many, 422, "dimensions_too_large")["message"]
    assert message == (
        "Nomic Embed Text v1.5 makes vectors of 8 numbers, so dimensions can be at most 8."
    )


async def test_a_chat_model_makes_no_embeddings_and_an_embedding_model_does_not_chat(
    stack: Stack,
) -> None:
    chatter, embedder = await sign_up(stack.http), await sign_up(stack.http)
    await active_session(stack, auth=chatter)
    embedding_id = await embedding_session(stack, embedder)
    before = len(stack.node.requests)
    refused = await stack.http.post(
        EMBEDDINGS, json={"model": "llama3.1-8b", "input": "hi"}, headers=chatter
    )
    message = assert_error(refused, 400, "not_an_embedding_model")["message"]
    assert message.startswith("Llama 3.1 8B is a chat model and makes no embeddings")
    chat = await stack.http.post(
        "/v1/chat/completions",
        json={"messages": HELLO},
        headers={**embedder, "X-Sizzle-Session": embedding_id},
    )
    assert "is an embedding model" in assert_error(chat, 400, "not_a_chat_model")["message"]
    assert len(stack.node.requests) == before  # refused before the node was asked
    session = await stack.http.get(f"/api/v1/sessions/{embedding_id}", headers=embedder)
    assert "does not chat" in session.json()["workspace"]["message"]


async def test_bad_bodies_are_refused_with_sentences_before_the_node(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    await embedding_session(stack, auth)
    before = len(stack.node.requests)
    bad = [
        {"model": EMBEDDING_TAG},
        {"model": EMBEDDING_TAG, "input": []},
        {"model": EMBEDDING_TAG, "input": [[1, 2, 3]]},
        {"model": EMBEDDING_TAG, "input": "x", "encoding_format": "int8"},
        {"model": EMBEDDING_TAG, "input": "x", "dimensions": 0},
        {"model": EMBEDDING_TAG, "input": ["x"] * 2049},
    ]
    for body in bad:
        error = assert_error(await stack.http.post(EMBEDDINGS, json=body, headers=auth), 422)
        assert error["message"].startswith("The field "), error
    assert len(stack.node.requests) == before
    assert_error(await stack.http.post(EMBEDDINGS, json={"input": "x"}), 401)
