"""Attachments over real HTTP on loopback: a PDF's text read by Sizzle reaches the fake Ollama
node in the prompt; an image reaches a vision model as the OpenAI content part Ollama takes,
and is refused before the node for a model that cannot see; oversize and unreadable files are
refused with a sentence."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from sizzle.api.app import create_app
from sizzle.api.uploads import MAX_UPLOAD_BYTES
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from tests.api.workspace_stack import Stack, active_session
from tests.domain.test_images import data_url
from tests.helpers import PASSWORD, assert_error, log_in, make_user, sign_up
from tests.services.test_attachments import pdf_of
from tests.web.pages import csrf_of, post_form

EXTRACT = "/api/v1/attachments/extract"
CHAT = "/v1/chat/completions"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")
IMAGE_PART = {
    "type": "image_url",
    "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
}


def asked_with_image(question: str) -> list[dict[str, object]]:
    return [{"role": "user", "content": [{"type": "text", "text": question}, IMAGE_PART]}]


async def test_a_pdfs_text_reaches_the_node_in_the_prompt(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    await active_session(stack, auth=auth)
    pdf = pdf_of("Quarterly revenue grew 12%.", "Costs fell by a third.")
    read = await stack.http.post(
        EXTRACT, files={"file": ("report.pdf", pdf, "application/pdf")}, headers=auth
    )
    assert read.status_code == 200, read.text
    attached = read.json()
    assert attached["note"].startswith("report.pdf: 2 pages, ")
    assert (attached["pages"], attached["truncated"]) == (2, False)
    message = f"{attached['prompt']}\n\nWhat changed this quarter?"
    chat = await stack.http.post(
        CHAT,
        json={"model": "llama3.1-8b", "messages": [{"role": "user", "content": message}]},
        headers=auth,
    )
    assert chat.status_code == 200, chat.text
    sent = [body for kind, body in stack.node.requests if kind == "chat"][-1]
    prompt = sent["messages"][0]["content"]
    assert "Quarterly revenue grew 12%." in prompt and "Costs fell by a third." in prompt


async def test_an_image_reaches_a_vision_model_as_an_openai_content_part(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth, model="gemma3-4b")
    seen = await stack.http.get(f"/api/v1/sessions/{session_id}", headers=auth)
    assert seen.json()["workspace"]["sees_images"] is True
    messages = asked_with_image("What is in this picture?")
    for stream in (False, True):
        answer = await stack.http.post(
            CHAT, json={"model": "gemma3-4b", "messages": messages, "stream": stream}, headers=auth
        )
        assert answer.status_code == 200, answer.text
    sent = [body for kind, body in stack.node.requests if kind == "chat"]
    assert all(body["messages"][0]["content"][1] == IMAGE_PART for body in sent)
    assert stack.node.images_seen == [PNG, PNG]  # decoded by the node, as Ollama does


async def test_a_model_that_cannot_see_refuses_an_image_before_the_node(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    session_id = await active_session(stack, auth=auth)
    seen = await stack.http.get(f"/api/v1/sessions/{session_id}", headers=auth)
    assert seen.json()["workspace"]["sees_images"] is False
    before = len(stack.node.requests)
    for stream in (False, True):
        refused = await stack.http.post(
            CHAT,
            json={"model": "llama3.1-8b", "messages": asked_with_image("hi"), "stream": stream},
            headers=auth,
        )
        error = assert_error(refused, 400, "model_cannot_see_images")
        assert error["message"].startswith("Llama 3.1 8B cannot see images, so nothing was sent.")
    assert len(stack.node.requests) == before


async def test_files_that_cannot_be_read_are_refused_with_a_sentence(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    too_big = await stack.http.post(
        EXTRACT, files={"file": ("huge.txt", b"x" * MAX_UPLOAD_BYTES, "text/plain")}, headers=auth
    )
    message = assert_error(too_big, 413, "file_too_large")["message"]
    assert message == "The file is over 10 MB, the most Sizzle reads from one file."
    wrong_kind = await stack.http.post(
        EXTRACT, files={"file": ("deck.pptx", b"PK\x03\x04", "application/zip")}, headers=auth
    )
    assert (
        "Sizzle reads text (.txt)" in assert_error(wrong_kind, 415, "unsupported_file")["message"]
    )
    no_file = await stack.http.post(EXTRACT, data={"other": "x"}, headers=auth)
    assert_error(no_file, 422, "file_missing")
    stranger = await stack.http.post(EXTRACT, files={"file": ("a.txt", b"hi", "text/plain")})
    assert_error(stranger, 401)


async def test_a_hostile_file_name_comes_back_as_plain_text(stack: Stack) -> None:
    auth = await sign_up(stack.http)
    hostile = "../<img src=x onerror=alert(1)>\u202e.md"
    read = await stack.http.post(
        EXTRACT, files={"file": (hostile, b"# Notes", "text/markdown")}, headers=auth
    )
    assert read.status_code == 200, read.text
    assert read.headers["content-type"] == "application/json"
    name = "<img src=x onerror=alert(1)>.md"
    assert read.json()["name"] == name
    assert read.json()["note"] == f"{name}: 7 characters included"


async def test_the_live_page_says_before_any_upload_whether_images_can_go(
    stack: Stack, db: Database, clock: FakeClock
) -> None:
    user = await make_user(db, now=clock.now())
    auth = await log_in(stack.http, email=user.email)
    session_id = await active_session(stack, auth=auth)
    app = create_app(state=stack.state, run_jobs=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as browser:
        await page_checks(browser, user.email, session_id)


async def page_checks(browser: httpx.AsyncClient, email: str, session_id: str) -> None:
    signed_in = await post_form(browser, "/signin", {"email": email, "password": PASSWORD})
    assert signed_in.status_code == 303, signed_in.text
    page = (await browser.get(f"/sessions/{session_id}")).text
    assert re.search(r'id="attach-image-button"[^>]*disabled', page)
    assert "Llama 3.1 8B cannot see images, so images cannot be attached here." in page
    assert not re.search(r'id="attach-document-button"[^>]*disabled', page)
    token = csrf_of(await browser.get("/account"))
    hostile = "<svg onload=alert(document.cookie)>.csv"
    upload = {"file": (hostile, b"a,b\n1,2\n", "text/csv")}
    read = await browser.post("/attachments/extract", files=upload, headers={"X-CSRF-Token": token})
    assert read.status_code == 200, read.text
    assert read.json()["note"] == f"{hostile}: 2 rows, 8 characters included"
    forged = await browser.post("/attachments/extract", files=upload)
    assert forged.status_code == 403  # no CSRF token: refused before the file is read


@asynccontextmanager
async def signed_in_page(stack: Stack, email: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The site, as the live page's script reaches it: signed in by cookie; (client, token)."""
    app = create_app(state=stack.state, run_jobs=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://sizzle.test") as page:
        signed_in = await post_form(page, "/signin", {"email": email, "password": PASSWORD})
        assert signed_in.status_code == 303, signed_in.text
        yield page, csrf_of(await page.get("/chats"))


PHOTO = data_url(1024, 768, "JPEG")
HOSTILE_PDF = '<img src=x onerror="alert(1)">report.pdf'


async def with_vision_session(
    stack: Stack, db: Database, clock: FakeClock
) -> tuple[str, dict[str, str], str]:
    """A user with an active session of a model that sees images: (email, auth, session id)."""
    user = await make_user(db, now=clock.now())
    auth = await log_in(stack.http, email=user.email)
    return user.email, auth, await active_session(stack, auth=auth, model="gemma3-4b")


def question_with_files(pdf_prompt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A question sent from the page with a PDF and a photo: (the message, its `attached`)."""
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": f"{pdf_prompt}\n\nWhat do these show?"},
            {"type": "image_url", "image_url": {"url": PHOTO}},
        ],
    }
    attached = {
        "question": "What do these show?",
        "files": [
            {"name": HOSTILE_PDF, "kind": "pdf", "note": f"{HOSTILE_PDF}: 1 page, 30 characters"},
            {"name": "photo.png", "kind": "image", "note": "photo.png: image, 1024 × 768"},
        ],
    }
    return message, attached


async def test_a_question_is_saved_with_its_image_and_its_files_notes_as_the_page_sent_it(
    stack: Stack, db: Database, clock: FakeClock
) -> None:
    email, _, session_id = await with_vision_session(stack, db, clock)
    pdf_prompt = 'Attached file "x.pdf":\n\nSales rose 9%.\n\n(End of "x.pdf".)'
    message, attached = question_with_files(pdf_prompt)
    async with signed_in_page(stack, email) as (page, token):
        headers = {"X-CSRF-Token": token}
        chat = (await page.post("/chats", json={"session_id": session_id}, headers=headers)).json()
        ask = {"messages": [message], "conversation_id": chat["id"], "attached": attached}
        wrong = {**ask, "attached": {**attached, "question": "Something else"}}
        refused = await page.post(f"/sessions/{session_id}/chat", json=wrong, headers=headers)
        assert_error(refused, 422, "attached_mismatch")
        answer = await page.post(f"/sessions/{session_id}/chat", json=ask, headers=headers)
        assert answer.status_code == 200, answer.text
        await stack.state.chat_proxy.saver.flush()
        saved = (await page.get(f"/chats/{chat['id']}/data.json")).json()
        markdown = (await page.get(f"/chats/{chat['id']}/export.md")).text
    assert len([body for kind, body in stack.node.requests if kind == "chat"]) == 1
    assert saved["title"] == "What do these show?"  # named after the question as typed
    question = saved["messages"][0]
    assert question["attached"] == attached
    assert question["parts"] == message["content"]  # the image as it was sent
    assert question["content"] == f"{pdf_prompt}\n\nWhat do these show?"  # what the model read
    assert saved["size_bytes"] == len(question["content"]) + len(PHOTO) + len(
        "Hello from the node."
    )
    # the download says what went with the question, as the page does
    notes = f"[file: {HOSTILE_PDF}: 1 page, 30 characters]\n[image: 1024×768 JPEG]"
    assert f"## You\n\n{notes}\n\nWhat do these show?\n" in markdown
    assert "Sales rose 9%." not in markdown and "base64" not in markdown


async def test_a_chat_with_images_carries_on_without_them_for_a_model_that_cannot_see(
    stack: Stack, db: Database, clock: FakeClock
) -> None:
    email, auth, seeing = await with_vision_session(stack, db, clock)
    message, attached = question_with_files("The PDF's text.")
    async with signed_in_page(stack, email) as (page, token):
        headers = {"X-CSRF-Token": token}
        chat = (await page.post("/chats", json={"session_id": seeing}, headers=headers)).json()
        ask = {"messages": [message], "conversation_id": chat["id"], "attached": attached}
        first = await page.post(f"/sessions/{seeing}/chat", json=ask, headers=headers)
        assert first.headers["X-Sizzle-Dropped-Images"] == "0"
        assert (await stack.http.post(f"/api/v1/sessions/{seeing}/stop", headers=auth)).is_success
        blind = await active_session(stack, auth=auth)  # Llama 3.1 8B sees no images
        await stack.state.chat_proxy.saver.flush()
        saved = (await page.get(f"/chats/{chat['id']}/data.json")).json()["messages"]
        history = [{"role": m["role"], "content": m["parts"] or m["content"]} for m in saved]
        follow_up = {"role": "user", "content": "And in one word?"}
        ask = {"messages": [*history, follow_up], "conversation_id": chat["id"]}
        carried = await page.post(f"/sessions/{blind}/chat", json=ask, headers=headers)
    assert carried.status_code == 200, carried.text
    assert carried.headers["X-Sizzle-Dropped-Images"] == "1"
    sent = [body for kind, body in stack.node.requests if kind == "chat"][-1]
    assert [m["content"] for m in sent["messages"]] == [
        "The PDF's text.\n\nWhat do these show?",  # the text the first model read, no image
        "Hello from the node.",
        "And in one word?",
    ]
    assert stack.node.images_seen == [base64.b64decode(PHOTO.split(",", 1)[1])]  # once only
