"""The model library as users see it: search, and which tier each build of a model fits."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from sizzle.catalog import CatalogModel, Quantization, load_catalog
from sizzle.domain.tiers import TIERS, Tier
from sizzle.domain.vram import (
    VramEstimate,
    cheapest_tier,
    estimate_vram_gb,
    fits,
    runs_on_a_laptop,
    tier_vram_gb,
)
from sizzle.errors import NotFound, ValidationFailed

DEFAULT_CONTEXT = 8192  # tokens: what a chat in the workspace holds by default


@dataclass(frozen=True)
class BuildFit:
    """One quantization of a model at a context length: its memory and the tiers it fits."""

    quantization: Quantization
    estimate: VramEstimate
    fits: dict[str, bool]
    cheapest_tier: Tier | None
    runs_on_a_laptop: bool


def build_fit(model: CatalogModel, quantization: Quantization, *, context: int) -> BuildFit:
    shape = model.attention
    estimate = estimate_vram_gb(
        parameters_b=model.parameters_b,
        bits_per_weight=quantization.bits,
        context_length=min(context, model.context_length),
        n_layers=shape.layers if shape else None,
        n_kv_heads=shape.kv_heads if shape else None,
        head_dim=shape.head_dim if shape else None,
    )
    return BuildFit(
        quantization=quantization,
        estimate=estimate,
        fits={name: fits(tier, estimate) for name, tier in TIERS.items()},
        cheapest_tier=cheapest_tier(estimate),
        runs_on_a_laptop=runs_on_a_laptop(estimate),
    )


def smallest_build(model: CatalogModel, *, context: int = DEFAULT_CONTEXT) -> BuildFit:
    """The build that needs the least memory: what "fits" means for the model as a whole."""
    return min(
        (build_fit(model, q, context=context) for q in model.quantizations),
        key=lambda fit: fit.estimate.total_gb,
    )


def search_models(
    *, search: str | None, category: str | None, limit: int, offset: int
) -> tuple[list[CatalogModel], int]:
    """Models whose name, slug, family or use match `search`, in `category`, paged."""
    models = load_catalog().models
    if category:
        models = [m for m in models if category in m.categories]
    if search:
        needle = search.strip().lower()
        models = [
            m for m in models if needle in f"{m.slug} {m.name} {m.family} {m.good_for}".lower()
        ]
    return models[offset : offset + limit], len(models)


def get_model(slug: str) -> CatalogModel:
    try:
        return load_catalog().get(slug)
    except KeyError:
        raise NotFound(f"no model {slug!r} in the library") from None


def check_context(context: int | None, model: CatalogModel | None = None) -> int:
    if context is None:
        return DEFAULT_CONTEXT
    if context < 1:
        raise ValidationFailed("context must be at least 1 token")
    return context if model is None else min(context, model.context_length)


# What Ollama accepts as a model name: `name`, `name:tag` or `namespace/name:tag`.
OLLAMA_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?(:[A-Za-z0-9._-]+)?$")


@dataclass(frozen=True)
class SessionModel:
    """The model a session will load: its Ollama tag, and anything the user should know."""

    ollama_tag: str
    warnings: tuple[str, ...] = ()


def model_name(ollama_tag: str) -> str:
    """What to call the model a session runs: the library's name for its Ollama tag
    ("Llama 3.1 8B"), with the build when the model has others ("Llama 3.1 8B, q8_0"), or the
    tag itself when the library does not know it."""
    return _names_by_tag().get(ollama_tag, ollama_tag)


@functools.cache
def _names_by_tag() -> dict[str, str]:
    names = {}
    for model in load_catalog().models:
        first, *others = model.quantizations
        names[first.ollama_tag] = model.name
        for build in others:
            names[build.ollama_tag] = f"{model.name}, {build.quant}"
    return names


def model_categories(ollama_tag: str) -> frozenset[str] | None:
    """What the library says the model an Ollama tag names is for ("chat", "vision",
    "embedding", ...); None when the library does not know the tag."""
    return _categories_by_tag().get(ollama_tag)


@functools.cache
def _categories_by_tag() -> dict[str, frozenset[str]]:
    return {
        build.ollama_tag: frozenset(model.categories)
        for model in load_catalog().models
        for build in model.quantizations
    }


def _find_build(name: str) -> tuple[CatalogModel, list[Quantization]] | None:
    """The library model `name` names (a slug, or one of its Ollama tags), with the builds
    that name allows: every build for a slug, one for a tag."""
    catalog = load_catalog()
    try:
        model = catalog.get(name)
        return model, list(model.quantizations)
    except KeyError:
        pass
    for model in catalog.models:
        for quantization in model.quantizations:
            if quantization.ollama_tag == name:
                return model, [quantization]
    return None


def chat_context(ollama_tag: str) -> int:
    """How many tokens a workspace chat with this model holds: the default, or less where the
    model itself reads less."""
    found = _find_build(ollama_tag)
    return min(found[0].context_length, DEFAULT_CONTEXT) if found else DEFAULT_CONTEXT


def choose_session_model(name: str, tier: Tier, *, context: int = DEFAULT_CONTEXT) -> SessionModel:
    """Check `name` against the library for a session on `tier`.

    A library slug becomes its first build that fits the tier; a library tag must fit. A name
    the library does not know is accepted as an Ollama tag, with a warning that nobody can say
    whether it fits. A model that cannot fit is a 422 naming the smallest tier that fits."""
    name = name.strip()
    found = _find_build(name)
    if found is None:
        if len(name) > 200 or not OLLAMA_NAME.match(name):
            raise ValidationFailed(
                f"{name!r} is neither a model in the library nor an Ollama model name "
                "(like llama3.1:8b)",
                code="unknown_model",
            )
        return SessionModel(
            ollama_tag=name,
            warnings=(
                f"{name} is not in the Sizzle model library, so Sizzle cannot say whether it "
                f"fits the {tier.name} tier's memory; if it does not, the launch will fail.",
            ),
        )
    model, builds = found
    fitted = [build_fit(model, q, context=context) for q in builds]
    for fit in fitted:
        if fit.fits[tier.name]:
            return SessionModel(ollama_tag=fit.quantization.ollama_tag)
    smallest = min(fitted, key=lambda fit: fit.estimate.total_gb)
    needs = f"{name} needs about {smallest.estimate.total_gb:.0f} GB of GPU memory"
    has = f"the {tier.name} tier has {tier_vram_gb(tier):.0f} GB"
    details: dict[str, object] = {
        "model": name,
        "tier": tier.name,
        "needs_vram_gb": round(smallest.estimate.total_gb, 1),
        "tier_vram_gb": tier_vram_gb(tier),
        "smallest_tier": smallest.cheapest_tier.name if smallest.cheapest_tier else None,
    }
    if smallest.cheapest_tier is None:
        raise ValidationFailed(
            f"{needs}; {has}, and no tier has enough", code="model_too_large", details=details
        )
    raise ValidationFailed(
        f"{needs}; {has}. The smallest tier that fits it is {smallest.cheapest_tier.name}.",
        code="model_does_not_fit",
        details=details,
    )
