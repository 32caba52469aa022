"""Attachments in a real browser: a PDF read by Sizzle and a photo shrunk on the page's canvas
go with the message to a vision model on the fake Ollama node, as text and as an OpenAI image
part; after a reload the question shows as it did live (the files' notes, the photo); hostile
file names stay text, and a saved image that is not an inline picture is never shown."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import ConversationMessage
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.e2e.browser import chromium_tab, needs_chromium, playwright_api, shot, sign_in_tab
from tests.helpers import PASSWORD, make_user, serve_here
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.server import serve
from tests.services.test_attachments import pdf_of

pytestmark = needs_chromium
VISION_TAG = "gemma3:4b"
BLIND_TAG = "llama3.1:8b"  # sees no images
HOSTILE = "<img src=x onerror=alert(1)>.pdf"


def png(width: int, height: int) -> bytes:
    """A plain orange picture, as a PNG file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xe8\x6a\x2c" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def node() -> Iterator[tuple[FakeOllama, str]]:
    fake = FakeOllama(registry={VISION_TAG: 3_000, BLIND_TAG: 2_000}, vision_models={VISION_TAG})
    with serve(fake_ollama_app(fake)) as url:
        yield fake, url


@dataclass
class Site:
    state: AppState
    page: Any
    fake: FakeOllama


@pytest.fixture
async def site(
    settings: Settings, clock: FakeClock, db: Database, node: tuple[FakeOllama, str]
) -> AsyncIterator[Site]:
    """Sizzle with the fake node as its one Ollama box, and a signed-in browser tab."""
    fake, url = node
    box = {"name": "box-1", "url": url, "gpu": "NVIDIA GeForce RTX 4090", "gpu_count": 1,
           "vram_gb": 24, "price_per_hour_usd": "0.30"}  # fmt: skip
    update = {"providers": "ollama", "ollama_nodes": json.dumps([box])}
    state = AppState.build(settings.model_copy(update=update), clock=clock, db=db)
    user = await make_user(db, now=clock.now())
    async with (
        serve_here(create_app(state=state, run_jobs=False)) as address,
        chromium_tab(address) as page,
    ):
        await sign_in_tab(page, user.email, PASSWORD)
        yield Site(state, page, fake)
    await state.chat_proxy.close()
    for provider in state.providers.values():
        await provider.close()


async def started(site: Site, model: str) -> None:
    """A session with `model` launched through the wizard and started, its page open."""
    page = site.page
    await page.goto(f"/launch?step=confirm&tier=starter&model={model}")
    await page.get_by_role("button", name="Launch").click()
    for _ in range(3):
        await site.state.jobs.run_once()
    await page.get_by_role("button", name="Start").click()
    await playwright_api.expect(page.locator("#chat-input")).to_be_editable()


async def test_a_document_and_a_photo_go_with_the_message(
    site: Site, clock: FakeClock, db: Database
) -> None:
    expect = playwright_api.expect
    page, state, fake = site.page, site.state, site.fake
    await started(site, "gemma3-4b")
    await expect(page.locator("#attach-image-button")).to_be_enabled()
    pdf = {"name": HOSTILE, "mimeType": "application/pdf", "buffer": pdf_of("Sales rose 9%.")}
    await page.set_input_files("#attach-document", files=[pdf])
    photo = {"name": "photo.png", "mimeType": "image/png", "buffer": png(2000, 1000)}
    await page.set_input_files("#attach-image", files=[photo])
    listed = page.locator("#attach-list")
    await expect(listed).to_contain_text(f"{HOSTILE}: 1 page, ")
    await expect(listed).to_contain_text("photo.png: image, sent as 1024 × 512 pixels")
    await page.get_by_label("Your message").fill("What do these show?")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator(".msg.assistant").last).to_contain_text("Hello from the node.")
    asked = page.locator(".msg.user").last
    await expect(listed.locator("li")).to_have_count(0)  # used up by the message
    await shows_the_question_as_sent(page, asked)
    await shot(page, "17-chat-attachments")

    # A reload shows the question as it was shown live, from what the server saved.
    await state.chat_proxy.saver.flush()
    await page.reload()
    await shows_the_question_as_sent(page, page.locator(".msg.user").last)
    await expect(page.locator(".msg.assistant").last).to_contain_text("Hello from the node.")
    await shot(page, "17-chat-attachments-reloaded")
    await page.get_by_label("Your message").fill("And the colour?")  # carried on: the photo too
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator(".msg.assistant")).to_have_count(2)
    await expect(page.locator(".msg.assistant").last).to_contain_text("Hello from the node.")
    first, again = [body["messages"] for kind, body in fake.requests if kind == "chat"]
    assert again[0] == first[0] and again[-1] == {"role": "user", "content": "And the colour?"}
    chat_id = new_url_chat(page.url)
    # the second question is written before the hostile one, which must come last
    await state.chat_proxy.saver.flush()
    await hostile_saved_parts_stay_out(db, clock, chat_id)
    await page.goto(f"/chats/{chat_id}")  # the chat's own page shows it the same way
    await shows_the_question_as_sent(page, page.locator(".msg.user").first)
    hostile = page.locator(".msg.user").last
    await expect(hostile).to_contain_text(f"Attached {HOSTILE_NOTE}")
    await expect(hostile.locator("img")).to_have_count(0)  # no address, no SVG shown
    assert await page.evaluate("window.pwned === undefined")
    await shot(page, "17-saved-chat-with-attachments")
    text, image = first[-1]["content"]
    assert "Sales rose 9%." in text["text"] and text["text"].endswith("What do these show?")
    assert image["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(image["image_url"]["url"].split(",", 1)[1])[:2] == b"\xff\xd8"


async def test_a_chat_carried_on_with_a_model_that_cannot_see_says_its_photo_was_left_out(
    site: Site,
) -> None:
    expect = playwright_api.expect
    page, fake = site.page, site.fake
    await started(site, "gemma3-4b")
    photo = {"name": "photo.png", "mimeType": "image/png", "buffer": png(800, 600)}
    await page.set_input_files("#attach-image", files=[photo])
    await page.get_by_label("Your message").fill("What colour is this?")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator(".msg.assistant").last).to_contain_text("Hello from the node.")
    await site.state.chat_proxy.saver.flush()
    chat_id = new_url_chat(page.url)
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="Stop").click()
    # the stop's own navigation has landed (the summary), so the next page load is not cut off
    await expect(page.locator("#summary")).to_contain_text("You stopped it.")
    await expect(page.locator("#chat-input")).to_have_count(0)  # ended: no chat

    await started(site, "llama3.1-8b")
    await page.goto(f"{urlsplit(page.url).path}?chat={chat_id}")
    await expect(page.locator(".msg.user img")).to_have_count(1)  # the chat keeps the photo
    # said as the chat opens, before anything is sent
    await expect(page.locator("#chat-note")).to_contain_text(
        "Llama 3.1 8B cannot see images, so the image in this chat will be left out of what it "
        "reads. The chat itself keeps it."
    )
    await page.get_by_label("Your message").fill("And in one word?")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("#chat-note")).to_have_text(
        "Llama 3.1 8B cannot see images, so the image sent earlier in this chat was left "
        "out. The chat itself keeps it."
    )
    await expect(page.locator(".msg.assistant").last).to_contain_text("Hello from the node.")
    await shot(page, "17-chat-carried-on-without-images")
    sent = [body for kind, body in fake.requests if kind == "chat"][-1]
    assert sent["model"] == BLIND_TAG
    assert [m["content"] for m in sent["messages"]] == [
        "What colour is this?",
        "Hello from the node.",
        "And in one word?",
    ]


HOSTILE_NOTE = '<img src=x onerror="window.pwned=1">.md: 9 characters included'


async def shows_the_question_as_sent(page: Any, asked: Any) -> None:
    """The user's bubble: the files' notes as text, the question as typed (not the document's
    text), and the photo as a picture."""
    expect = playwright_api.expect
    await expect(asked).to_contain_text(f"Attached {HOSTILE}: 1 page")
    await expect(asked).to_contain_text("Attached photo.png: image, sent as 1024 × 512 pixels")
    await expect(asked).to_contain_text("What do these show?")
    await expect(asked).not_to_contain_text("Sales rose 9%.")
    picture = asked.locator("img")
    await expect(picture).to_have_count(1)  # the photo; the name stayed text
    assert (await picture.get_attribute("src") or "").startswith("data:image/jpeg;base64,")
    assert await page.locator("img[onerror]").count() == 0
    assert await page.evaluate("window.pwned === undefined")


def new_url_chat(url: str) -> str:
    return parse_qs(urlsplit(url).query)["chat"][0]


async def hostile_saved_parts_stay_out(db: Database, clock: FakeClock, chat_id: str) -> None:
    """A saved question whose parts and notes are hostile (written straight to the database,
    past the checks that keep them out): an image address, an SVG, a hostile file name."""
    parts = [
        {"type": "text", "text": "Look"},
        {"type": "image_url", "image_url": {"url": "https://tracker.example/pixel.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/svg+xml;base64,PHN2Zz4="}},
        {"type": "image_url", "image_url": "javascript:window.pwned=2"},
    ]
    files = [{"name": "x", "kind": "markdown", "note": HOSTILE_NOTE}]
    async with db.transaction() as tx:
        tx.add(
            ConversationMessage(
                conversation_id=chat_id,
                role="user",
                content="Look",
                status="done",
                parts=parts,
                attached={"question": "Look", "files": files},
                created_at=clock.now(),
            )
        )
