"""Attachments over real HTTP on loopback: a PDF's text read by Sizzle reaches the fake Ollama
node in the prompt; an image reaches a vision model as the OpenAI content part Ollama takes,
and is refused before the node for a model that cannot see; oversize and unreadable files are
refused with a sentence."""

from __future__ import annotations

import base64
import re

import httpx

from sizzle.api.app import create_app
from sizzle.api.uploads import MAX_UPLOAD_BYTES
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from tests.api.workspace_stack import Stack, active_session
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
