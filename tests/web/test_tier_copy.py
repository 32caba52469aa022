"""Tier copy promises only what exists: every model size or library model a tier card names
fits that tier by the library's own estimate, and no card names a capability Sizzle does not
have (it serves library models for chat and embeddings; it neither trains nor makes images)."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from sizzle.catalog import load_catalog
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.domain.tiers import TIERS
from sizzle.services.model_library import smallest_build
from sizzle.services.tier_models import tier_models
from tests.web.pages import sign_in

# What people would read as a promise Sizzle cannot keep.
NOT_OFFERED = re.compile(
    r"image generation|generat\w* (?:an )?images?|fine-?tun|train|video|speech|voice|audio"
    r"|diffusion|transcri|render|mining",
    re.IGNORECASE,
)
SIZE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?B\b")  # "70B", "24 B"; not the 7B of "8x7B"


def smallest_build_fits(size_b: float, tier: str) -> bool:
    """Some library model of about that size (within 15 %) fits the tier."""
    return any(
        abs(m.parameters_b - size_b) <= 0.15 * size_b and smallest_build(m).fits[tier]
        for m in load_catalog().models
    )


def broken_promises(tier: str, copy: str) -> list[str]:
    """What the copy of one tier's card says that the library or Sizzle does not back."""
    problems = [f"offers {m.group(0)!r}" for m in NOT_OFFERED.finditer(copy)]
    problems += [
        f"names {m.group(0)} models, and none of that size fits {tier}"
        for m in SIZE.finditer(copy)
        if not smallest_build_fits(float(m.group(1)), tier)
    ]
    problems += [
        f"names {m.name}, which does not fit {tier}"
        for m in load_catalog().models
        if m.name in copy and not smallest_build(m).fits[tier]
    ]
    return problems


@pytest.mark.parametrize("tier", list(TIERS))
def test_the_tier_copy_promises_only_what_the_library_and_sizzle_have(tier: str) -> None:
    assert broken_promises(tier, TIERS[tier].good_for) == []
    assert broken_promises(tier, tier_models(tier).summary) == []


@pytest.mark.parametrize(
    ("tier", "copy"),
    [
        ("pro", "70B models in 4-bit, long contexts, fine-tuning small models."),
        ("starter", "Chat and coding models up to about 30B parameters, image generation."),
        ("beast", "The strongest open models at full speed, serious fine-tuning."),
        ("ultra", "Frontier-size open models and multi-GPU training."),
        ("starter", "Runs Llama 3.3 70B."),
    ],
)
def test_the_check_catches_the_copy_the_cards_had(tier: str, copy: str) -> None:
    assert broken_promises(tier, copy)


def test_the_generated_line_names_the_largest_model_that_fits() -> None:
    starter = tier_models("starter")
    assert starter.largest_b == max(
        m.parameters_b for m in load_catalog().models if smallest_build(m).fits["starter"]
    )
    assert "up to 24B parameters" in starter.summary


def _cards(page: str) -> list[str]:
    """The text of each tier card on a page (landing or the wizard's first step)."""
    parts = re.split(r'<(?:div|label) class="(?:card stack|choice)">', page)[1:]
    return [html.unescape(re.sub(r"<[^>]+>", " ", part)) for part in parts]


async def test_the_cards_on_the_pages_keep_the_same_promise(
    browser: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    landing = (await browser.get("/")).text
    await sign_in(browser, db, clock=clock)
    wizard = (await browser.get("/launch")).text
    for page in (landing, wizard):
        cards = [c for c in _cards(page) if "/ minute" in c]
        assert len(cards) == len(TIERS)
        for tier, card in zip(TIERS, cards, strict=True):
            assert tier.capitalize() in card
            assert broken_promises(tier, card) == [], card
