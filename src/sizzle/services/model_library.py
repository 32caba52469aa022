"""The model library as users see it: search, and which tier each build of a model fits."""

from __future__ import annotations

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


# Words of a task, and the library category they point to. The first category found leads.
TASK_WORDS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "embedding",
        frozenset(
            {
                "embed",
                "embedding",
                "embeddings",
                "rag",
                "retrieval",
                "semantic",
                "similarity",
                "vector",
                "vectors",
            }
        ),
    ),
    (
        "vision",
        frozenset(
            {
                "image",
                "images",
                "photo",
                "photos",
                "picture",
                "pictures",
                "vision",
                "screenshot",
                "screenshots",
                "ocr",
                "diagram",
                "diagrams",
                "see",
            }
        ),
    ),
    (
        "code",
        frozenset(
            {
                "code",
                "coding",
                "program",
                "programming",
                "developer",
                "python",
                "javascript",
                "typescript",
                "rust",
                "sql",
                "debug",
                "refactor",
                "bug",
            }
        ),
    ),
    (
        "reasoning",
        frozenset(
            {
                "reason",
                "reasoning",
                "math",
                "maths",
                "logic",
                "think",
                "thinking",
                "solve",
                "puzzle",
                "puzzles",
                "proof",
                "science",
            }
        ),
    ),
    ("tools", frozenset({"tool", "tools", "agent", "agents", "function", "functions"})),
    (
        "multilingual",
        frozenset(
            {
                "translate",
                "translation",
                "translating",
                "multilingual",
                "languages",
                "french",
                "spanish",
                "german",
                "chinese",
                "japanese",
            }
        ),
    ),
    (
        "chat",
        frozenset(
            {
                "chat",
                "talk",
                "assistant",
                "write",
                "writing",
                "summarize",
                "email",
                "conversation",
                "questions",
            }
        ),
    ),
)


@dataclass(frozen=True)
class Recommendation:
    model: CatalogModel
    fit: BuildFit
    tier: Tier
    reasons: tuple[str, ...]


def task_categories(task: str) -> list[str]:
    """The library categories a task names, leading one first; chat when it names none."""
    words = set(re.findall(r"[a-z]+", task.lower()))
    found = [category for category, keywords in TASK_WORDS if words & keywords]
    return found or ["chat"]


def recommend(
    task: str, *, tier: Tier | None = None, limit: int = 3, context: int = DEFAULT_CONTEXT
) -> list[Recommendation]:
    """A few models for `task`, each with the tier it runs on and why it was chosen.

    Candidates are the library's models in the task's leading category. The strongest is
    taken to be the newest, then the largest: more parameters generally answer better, and
    a newer generation beats an older one of the same size. Without `tier`, one suggestion
    per tier, cheapest first (the strongest candidate whose cheapest tier it is), so the
    user sees what each step up in price buys; with `tier`, the strongest that fit it."""
    categories = task_categories(task)
    lead = categories[0]
    candidates = [m for m in load_catalog().models if lead in m.categories]
    fitted = [(model, smallest_build(model, context=context)) for model in candidates]

    def strength(item: tuple[CatalogModel, BuildFit]) -> tuple[int, bool, int, float]:
        model, _ = item
        also = len(set(categories[1:]) & set(model.categories))
        # made for the task, or a general chat model, before one made for something else
        suits = model.categories[0] in (lead, "chat")
        return (model.released, suits, also, model.parameters_b)

    picks: list[tuple[CatalogModel, BuildFit, Tier]] = []
    if tier is not None:
        fitting = [item for item in fitted if item[1].fits[tier.name]]
        picks = [(m, f, tier) for m, f in sorted(fitting, key=strength, reverse=True)[:limit]]
    else:
        for step in sorted(TIERS.values(), key=lambda t: t.price_micros_per_minute):
            here = [item for item in fitted if item[1].cheapest_tier == step]
            if here:
                model, fit = max(here, key=strength)
                picks.append((model, fit, step))
        picks = picks[:limit]
    return [
        Recommendation(
            model=m,
            fit=f,
            tier=t,
            reasons=_reasons(m, f, t, categories, context=context, one_per_tier=tier is None),
        )
        for m, f, t in picks
    ]


def _reasons(
    model: CatalogModel,
    fit: BuildFit,
    tier: Tier,
    categories: list[str],
    *,
    context: int,
    one_per_tier: bool,
) -> tuple[str, ...]:
    lead = categories[0]
    reasons = [f"Made for {lead}" if model.categories[0] == lead else f"Good at {lead}"]
    also = [c for c in categories[1:] if c in model.categories]
    if also:
        reasons.append(f"Also good at {', '.join(also)}")
    reasons.append(model.good_for)
    reasons.append(
        f"Fits the {tier.name} tier: about {fit.estimate.total_gb:.0f} GB of its "
        f"{tier_vram_gb(tier):.0f} GB of GPU memory with {context:,} tokens of context"
    )
    if one_per_tier:
        reasons.append(
            f"The newest ({model.released}) and largest {lead} model whose smallest tier "
            f"is {tier.name}"
        )
    else:
        reasons.append(
            f"Among the newest ({model.released}) and largest {lead} models that fit {tier.name}"
        )
    if fit.runs_on_a_laptop:
        reasons.append("Small enough for an ordinary laptop: you may not need a rented GPU")
    return tuple(reasons)
