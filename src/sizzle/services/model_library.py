"""The model library as users see it: search, and which tier each build of a model fits."""

from __future__ import annotations

from dataclasses import dataclass

from sizzle.catalog import CatalogModel, Quantization, load_catalog
from sizzle.domain.tiers import TIERS, Tier
from sizzle.domain.vram import VramEstimate, cheapest_tier, estimate_vram_gb, fits, runs_on_a_laptop
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
    estimate = estimate_vram_gb(
        parameters_b=model.parameters_b,
        bits_per_weight=quantization.bits,
        context_length=min(context, model.context_length),
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
