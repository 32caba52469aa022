"""Attachments in a real browser: a PDF read by Sizzle and a photo shrunk on the page's canvas
go with the message to a vision model on the fake Ollama node, as text and as an OpenAI image
part; a hostile file name stays text on the page."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator

import pytest

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.e2e.browser import chromium_tab, needs_chromium, playwright_api, shot, sign_in_tab
from tests.helpers import PASSWORD, make_user, serve_here
from tests.providers.fakes.ollama import FakeOllama, fake_ollama_app
from tests.providers.fakes.server import serve
from tests.services.test_attachments import pdf_of

pytestmark = needs_chromium
VISION_TAG = "gemma3:4b"
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
    fake = FakeOllama(registry={VISION_TAG: 3_000}, vision_models={VISION_TAG})
    with serve(fake_ollama_app(fake)) as url:
        yield fake, url


async def test_a_document_and_a_photo_go_with_the_message(
    settings: Settings, clock: FakeClock, db: Database, node: tuple[FakeOllama, str]
) -> None:
    expect = playwright_api.expect
    fake, url = node
    box = {"name": "box-1", "url": url, "gpu": "NVIDIA GeForce RTX 4090", "gpu_count": 1,
           "vram_gb": 24, "price_per_hour_usd": "0.30"}  # fmt: skip
    update = {"providers": "ollama", "ollama_nodes": json.dumps([box])}
    state = AppState.build(settings.model_copy(update=update), clock=clock, db=db)
    user = await make_user(db, now=clock.now())
    async with (
        serve_here(create_app(state=state, run_jobs=False)) as site,
        chromium_tab(site) as page,
    ):
        await sign_in_tab(page, user.email, PASSWORD)
        await page.goto("/launch?step=confirm&tier=starter&model=gemma3-4b")
        await page.get_by_role("button", name="Launch").click()
        for _ in range(3):
            await state.jobs.run_once()
        await page.get_by_role("button", name="Start").click()
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
        await expect(asked).to_contain_text(f"Attached {HOSTILE}: 1 page")
        assert await page.locator("#chat-log img").count() == 0  # the name stayed text
        await expect(listed.locator("li")).to_have_count(0)  # used up by the message
        await shot(page, "17-chat-attachments")
    sent = [body for kind, body in fake.requests if kind == "chat"][-1]
    text, image = sent["messages"][-1]["content"]
    assert "Sales rose 9%." in text["text"] and text["text"].endswith("What do these show?")
    assert image["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(image["image_url"]["url"].split(",", 1)[1])[:2] == b"\xff\xd8"
    await state.chat_proxy.close()
    for provider in state.providers.values():
        await provider.close()
