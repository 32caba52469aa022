"""Recommending models for a task: the task read into library categories, and the newest,
then largest, model that fits each tier, with the reasons in words."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sizzle.catalog import CatalogModel, load_catalog
from sizzle.domain.tiers import TIERS, Tier
from sizzle.domain.vram import tier_vram_gb
from sizzle.services.model_library import DEFAULT_CONTEXT, BuildFit, smallest_build

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
