"""The model library: open models that Ollama serves, with sizes and quantizations."""

from __future__ import annotations

import functools
from importlib import resources

from sizzle.catalog.schema import CATEGORIES, Catalog, CatalogModel, Quantization

__all__ = ["CATEGORIES", "Catalog", "CatalogModel", "Quantization", "load_catalog"]


@functools.cache
def load_catalog() -> Catalog:
    """Read and validate the packaged ``models.json`` (once per process)."""
    raw = resources.files(__package__).joinpath("models.json").read_text(encoding="utf-8")
    return Catalog.model_validate_json(raw)
