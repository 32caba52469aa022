"""Pydantic models for the packaged model catalog (``models.json``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Category = Literal["chat", "code", "vision", "embedding", "reasoning", "tools", "multilingual"]
CATEGORIES: frozenset[str] = frozenset(
    {"chat", "code", "vision", "embedding", "reasoning", "tools", "multilingual"}
)

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]*$", max_length=64)]
OllamaTag = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*:[a-zA-Z0-9._-]+$")]


class Quantization(BaseModel):
    """One downloadable build of a model, as Ollama names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ollama_tag: OllamaTag
    quant: Annotated[str, Field(min_length=2, max_length=16)]
    bits: Annotated[float, Field(gt=1, le=32)]
    download_size_gb: Annotated[float, Field(gt=0)]
    # "ollama": the size the Ollama library lists for this tag;
    # "computed": parameters x bits / 8, used where no listed size was confirmed.
    size_source: Literal["ollama", "computed"] = "ollama"


class Attention(BaseModel):
    """The attention shape from the model's published config: it sizes the KV cache exactly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: Annotated[int, Field(gt=0, le=1000)]
    kv_heads: Annotated[int, Field(gt=0, le=1000)]
    head_dim: Annotated[int, Field(gt=0, le=4096)]


class CatalogModel(BaseModel):
    """One open model that Ollama serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: Slug
    name: Annotated[str, Field(min_length=1)]
    family: Annotated[str, Field(min_length=1)]
    parameters_b: Annotated[float, Field(gt=0)]
    active_parameters_b: Annotated[float, Field(gt=0)] | None = None
    context_length: Annotated[int, Field(gt=0)]
    # The year the makers first published this model at this size.
    released: Annotated[int, Field(ge=2018, le=2100)]
    # Known for some models; without it the KV cache is approximated from the parameter count.
    attention: Attention | None = None
    license: Annotated[str, Field(min_length=1)]
    categories: Annotated[tuple[Category, ...], Field(min_length=1)]
    good_for: Annotated[str, Field(min_length=1, max_length=160, pattern=r"^[^\n]*$")]
    quantizations: Annotated[list[Quantization], Field(min_length=1)]

    @model_validator(mode="after")
    def _check(self) -> CatalogModel:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"{self.slug}: categories repeat: {list(self.categories)}")
        if self.active_parameters_b is not None and self.active_parameters_b > self.parameters_b:
            raise ValueError(
                f"{self.slug}: active_parameters_b ({self.active_parameters_b}) "
                f"exceeds parameters_b ({self.parameters_b})"
            )
        return self

    @property
    def smallest_download_gb(self) -> float:
        return min(q.download_size_gb for q in self.quantizations)


class Catalog(BaseModel):
    """The whole catalog: unique slugs, unique Ollama tags."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: Annotated[list[CatalogModel], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        seen_slugs: set[str] = set()
        seen_tags: set[str] = set()
        for model in self.models:
            if model.slug in seen_slugs:
                raise ValueError(f"duplicate slug: {model.slug!r}")
            seen_slugs.add(model.slug)
            for q in model.quantizations:
                if q.ollama_tag in seen_tags:
                    raise ValueError(f"duplicate ollama_tag: {q.ollama_tag!r}")
                seen_tags.add(q.ollama_tag)
        return self

    def get(self, slug: str) -> CatalogModel:
        for model in self.models:
            if model.slug == slug:
                return model
        raise KeyError(slug)
