"""The model library: search it, and see which tier each model needs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from sizzle.api.deps import PagingDep
from sizzle.api.schemas import Page, usd
from sizzle.catalog import CatalogModel
from sizzle.services import model_library, sessions
from sizzle.services import recommend as recommender
from sizzle.services.model_library import BuildFit

router = APIRouter(prefix="/api/v1/models", tags=["models"])


class ModelOut(BaseModel):
    slug: str
    name: str
    family: str
    parameters_b: float
    active_parameters_b: float | None
    context_length: int
    released: int
    license: str
    categories: list[str]
    good_for: str
    best_tier: str | None
    runs_on_a_laptop: bool
    hint: str | None


class BuildOut(BaseModel):
    ollama_tag: str
    quant: str
    download_size_gb: float
    vram_gb: float
    fits: dict[str, bool]
    cheapest_tier: str | None


class ModelDetailOut(ModelOut):
    context_for_estimate: int
    builds: list[BuildOut]


def _summary(model: CatalogModel, smallest: BuildFit) -> dict[str, object]:
    tier = smallest.cheapest_tier
    return {
        **model.model_dump(exclude={"quantizations", "categories"}),
        "categories": sorted(model.categories),
        "best_tier": tier.name if tier else None,
        "runs_on_a_laptop": smallest.runs_on_a_laptop,
        "hint": "You may not need a rented GPU for this: it runs on an ordinary laptop."
        if smallest.runs_on_a_laptop
        else None,
    }


@router.get("", response_model=Page[ModelOut])
async def list_models(
    paging: PagingDep,
    search: Annotated[str | None, Query(max_length=100)] = None,
    category: Annotated[str | None, Query(max_length=32)] = None,
) -> Page[ModelOut]:
    models, total = model_library.search_models(
        search=search, category=category, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[ModelOut(**_summary(m, model_library.smallest_build(m))) for m in models],
        total=total,
    )


class RecommendationOut(BaseModel):
    model: ModelOut
    ollama_tag: str
    tier: str
    price_per_minute_usd: str
    vram_gb: float
    reasons: list[str]


class RecommendationsOut(BaseModel):
    task: str
    categories: list[str] = Field(description="What the task was read as, leading one first.")
    items: list[RecommendationOut]


@router.get("/recommend", response_model=RecommendationsOut)
async def recommend_models(
    task: Annotated[str, Query(min_length=1, max_length=200, description="e.g. 'write Python'")],
    tier: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=10)] = 3,
) -> RecommendationsOut:
    """A few models for a task, ranked, each with the tier it needs and why it was chosen.
    Without `tier`: the best pick for each tier, cheapest first."""
    chosen_tier = sessions.find_tier(tier) if tier else None
    picks = recommender.recommend(task, tier=chosen_tier, limit=limit)
    return RecommendationsOut(
        task=task,
        categories=recommender.task_categories(task),
        items=[
            RecommendationOut(
                model=ModelOut(**_summary(pick.model, pick.fit)),
                ollama_tag=pick.fit.quantization.ollama_tag,
                tier=pick.tier.name,
                price_per_minute_usd=usd(pick.tier.price_micros_per_minute),
                vram_gb=round(pick.fit.estimate.total_gb, 1),
                reasons=list(pick.reasons),
            )
            for pick in picks
        ],
    )


@router.get("/{slug}", response_model=ModelDetailOut)
async def get_model(
    slug: str, context: Annotated[int | None, Query(ge=1, le=10_000_000)] = None
) -> ModelDetailOut:
    model = model_library.get_model(slug)
    tokens = model_library.check_context(context, model)
    builds = [model_library.build_fit(model, q, context=tokens) for q in model.quantizations]
    return ModelDetailOut(
        **_summary(model, min(builds, key=lambda b: b.estimate.total_gb)),
        context_for_estimate=tokens,
        builds=[
            BuildOut(
                ollama_tag=b.quantization.ollama_tag,
                quant=b.quantization.quant,
                download_size_gb=b.quantization.download_size_gb,
                vram_gb=round(b.estimate.total_gb, 1),
                fits=b.fits,
                cheapest_tier=b.cheapest_tier.name if b.cheapest_tier else None,
            )
            for b in builds
        ],
    )
