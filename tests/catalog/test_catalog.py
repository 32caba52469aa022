"""The packaged model catalog: it loads, it is internally consistent, bad data is refused."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from pydantic import ValidationError

from sizzle.catalog import CATEGORIES, Catalog, load_catalog


def _raw() -> dict[str, Any]:
    text = resources.files("sizzle.catalog").joinpath("models.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def test_packaged_file_validates_and_is_cached() -> None:
    catalog = load_catalog()
    assert isinstance(catalog, Catalog)
    assert load_catalog() is catalog


def test_at_least_fifty_models() -> None:
    assert len(load_catalog().models) >= 50


def test_slugs_and_tags_are_unique() -> None:
    models = load_catalog().models
    slugs = [m.slug for m in models]
    tags = [q.ollama_tag for m in models for q in m.quantizations]
    assert len(slugs) == len(set(slugs))
    assert len(tags) == len(set(tags))


def test_categories_are_known_and_present() -> None:
    used: set[str] = set()
    for model in load_catalog().models:
        assert model.categories, model.slug
        assert set(model.categories) <= CATEGORIES, model.slug
        used |= set(model.categories)
    # The library should cover every kind of model we advertise.
    assert used == CATEGORIES


def test_every_model_has_a_quantization() -> None:
    for model in load_catalog().models:
        assert model.quantizations, model.slug


def test_download_sizes_are_plausible() -> None:
    """Listed sizes must be close to parameters x bits / 8.

    The 0.25 GB absolute allowance covers small models whose embedding tables or
    vision encoders are kept at higher precision than the nominal quantization.
    """
    for model in load_catalog().models:
        for q in model.quantizations:
            expected = model.parameters_b * q.bits / 8
            low, high = 0.65 * expected, 1.35 * expected + 0.25
            assert low <= q.download_size_gb <= high, (
                f"{q.ollama_tag}: {q.download_size_gb} GB vs ~{expected:.2f} GB expected"
            )


def test_quant_bits_are_consistent() -> None:
    nominal = {"q4_0": 4.5, "q4_K_M": 4.85, "q8_0": 8.5, "fp16": 16.0, "mxfp4": 4.25}
    for model in load_catalog().models:
        for q in model.quantizations:
            assert q.quant in nominal, q.ollama_tag
            assert q.bits == nominal[q.quant], q.ollama_tag


def test_tags_have_name_and_tag() -> None:
    for model in load_catalog().models:
        for q in model.quantizations:
            name, _, tag = q.ollama_tag.partition(":")
            assert name and tag, q.ollama_tag


def test_moe_models_have_sane_active_parameters() -> None:
    moe = [m for m in load_catalog().models if m.active_parameters_b is not None]
    assert moe, "expected some mixture-of-experts models"
    for model in moe:
        assert model.active_parameters_b is not None
        assert 0 < model.active_parameters_b < model.parameters_b


def test_embedding_models_are_small() -> None:
    embeddings = [m for m in load_catalog().models if "embedding" in m.categories]
    assert len(embeddings) >= 3
    for model in embeddings:
        assert model.parameters_b < 1.0, model.slug
        assert model.context_length <= 8192, model.slug
        assert model.smallest_download_gb < 2.0, model.slug


def test_context_lengths_are_sane() -> None:
    for model in load_catalog().models:
        assert 512 <= model.context_length <= 10_485_760, model.slug


def test_catalog_spans_every_tier() -> None:
    sizes = [m.smallest_download_gb for m in load_catalog().models]
    assert min(sizes) < 1  # tiny models for starter
    assert any(20 < s < 80 for s in sizes)  # pro / single H100
    assert any(s > 192 for s in sizes)  # needs the ultra tier


def test_good_for_is_one_line() -> None:
    for model in load_catalog().models:
        assert "\n" not in model.good_for
        assert len(model.good_for) <= 160


def test_duplicate_slug_is_refused() -> None:
    data = _raw()
    data["models"].append(copy.deepcopy(data["models"][0]))
    data["models"][-1]["quantizations"][0]["ollama_tag"] = "something:else"
    with pytest.raises(ValidationError, match="duplicate slug"):
        Catalog.model_validate(data)


def test_duplicate_tag_is_refused() -> None:
    data = _raw()
    clone = copy.deepcopy(data["models"][0])
    clone["slug"] = "a-new-slug"
    data["models"].append(clone)
    with pytest.raises(ValidationError, match="duplicate ollama_tag"):
        Catalog.model_validate(data)


def test_unknown_category_is_refused() -> None:
    data = _raw()
    data["models"][0]["categories"] = ["chat", "telepathy"]
    with pytest.raises(ValidationError) as info:
        Catalog.model_validate(data)
    assert "categories" in str(info.value)
    assert "telepathy" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("categories", []),
        ("quantizations", []),
        ("slug", "Llama 3"),
        ("parameters_b", 0),
        ("context_length", -1),
        ("good_for", "two\nlines"),
    ],
)
def test_bad_fields_are_refused(field: str, value: object) -> None:
    data = _raw()
    data["models"][0][field] = value
    with pytest.raises(ValidationError, match=field):
        Catalog.model_validate(data)


def test_extra_fields_are_refused() -> None:
    data = _raw()
    data["models"][0]["vram_gb"] = 12
    with pytest.raises(ValidationError, match="vram_gb"):
        Catalog.model_validate(data)


def test_active_parameters_cannot_exceed_total() -> None:
    data = _raw()
    data["models"][0]["active_parameters_b"] = data["models"][0]["parameters_b"] + 1
    with pytest.raises(ValidationError, match="active_parameters_b"):
        Catalog.model_validate(data)


def test_repeated_category_is_refused() -> None:
    data = _raw()
    data["models"][0]["categories"] = ["chat", "chat"]
    with pytest.raises(ValidationError, match="categories repeat"):
        Catalog.model_validate(data)


def test_release_years_are_plausible() -> None:
    for model in load_catalog().models:
        assert 2019 <= model.released <= 2026, model.slug


def test_known_attention_shapes_make_a_kv_cache_no_larger_than_the_approximation() -> None:
    from sizzle.domain.vram import approx_kv_bytes_per_token

    shaped = [m for m in load_catalog().models if m.attention]
    assert len(shaped) >= 10
    for model in shaped:
        assert model.attention is not None
        exact = 2 * model.attention.layers * model.attention.kv_heads * model.attention.head_dim * 2
        assert exact <= approx_kv_bytes_per_token(model.parameters_b), model.slug


def test_every_models_tiers_agree_with_the_vram_function() -> None:
    from sizzle.domain.tiers import TIERS
    from sizzle.domain.vram import fits, tier_vram_gb
    from sizzle.services.model_library import build_fit

    by_price = sorted(TIERS.values(), key=lambda t: t.price_micros_per_minute)
    for model in load_catalog().models:
        for quantization in model.quantizations:
            fit = build_fit(model, quantization, context=8192)
            assert fit.fits == {t.name: fits(t, fit.estimate) for t in TIERS.values()}
            fitting = [t for t in by_price if fit.fits[t.name]]
            assert fit.cheapest_tier == (fitting[0] if fitting else None), quantization.ollama_tag
            # A tier with more memory fits whatever a tier with less memory fits.
            for small in TIERS.values():
                for large in TIERS.values():
                    if fit.fits[small.name] and tier_vram_gb(large) >= tier_vram_gb(small):
                        assert fit.fits[large.name], (quantization.ollama_tag, small.name)
