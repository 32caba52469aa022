"""Images kept with a saved chat: only inline pictures in four formats are kept, each described
in words by its real size, and left out of earlier messages for a model that cannot see."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image  # fpdf2's dependency: real files in each format

from sizzle.domain.images import describe, images_size, kept_parts, without_earlier_images


def data_url(width: int, height: int, fmt: str) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (232, 106, 44)).save(out, format=fmt)
    mime = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif"}[fmt]
    return f"data:image/{mime};base64," + base64.b64encode(out.getvalue()).decode()


def image(url: str) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url}}


@pytest.mark.parametrize(
    ("fmt", "words"),
    [("PNG", "PNG"), ("JPEG", "JPEG"), ("WEBP", "WebP"), ("GIF", "GIF")],
)
def test_an_image_is_described_by_its_size_and_format(fmt: str, words: str) -> None:
    assert describe(data_url(1024, 768, fmt)) == f"image: 1024×768 {words}"


def test_an_image_whose_header_cannot_be_read_is_still_named() -> None:
    assert describe("data:image/jpeg;base64,AAAA") == "image: JPEG"
    assert describe("https://example.com/cat.png") == "image"


def test_only_inline_pictures_in_four_formats_are_kept() -> None:
    png = data_url(2, 2, "PNG")
    content = [
        {"type": "text", "text": "What is this?"},
        image(png),
        image("https://tracker.example/pixel.png"),
        image("data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+"),
        image('data:image/png;base64,AAAA"><script>'),
        {"type": "input_audio", "input_audio": {"data": "x"}},
    ]
    assert kept_parts(content) == [{"type": "text", "text": "What is this?"}, image(png)]
    assert images_size(kept_parts(content)) == len(png)
    assert kept_parts([{"type": "text", "text": "no picture"}]) is None
    assert kept_parts("plain text") is None
    assert kept_parts([image("https://tracker.example/pixel.png")]) is None


def test_earlier_images_are_left_out_and_the_last_message_is_left_alone() -> None:
    png = data_url(2, 2, "PNG")
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "One"}, image(png), image(png)]},
        {"role": "assistant", "content": "Two cats."},
        {"role": "user", "content": [{"type": "text", "text": "And now?"}, image(png)]},
    ]
    kept, left_out = without_earlier_images(messages)
    assert left_out == 2
    assert kept[0] == {"role": "user", "content": "One"}  # plain text again
    assert kept[1:] == messages[1:]
    assert without_earlier_images(messages[1:2]) == (messages[1:2], 0)
