"""What each tier runs, read from the model library: the largest models that fit it, in the
words a tier card uses. Generated, so a card can never promise a size the library says does
not fit (tests/services/test_tier_copy.py holds the hand-written copy to the same rule)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sizzle.catalog import CatalogModel, load_catalog
from sizzle.domain.tiers import TIERS, Tier
from sizzle.services.model_library import smallest_build

EXAMPLES = 2


@dataclass(frozen=True)
class TierModels:
    tier: Tier
    fitting: tuple[CatalogModel, ...]  # largest first
    total: int  # models in the library

    @property
    def largest_b(self) -> float:
        return self.fitting[0].parameters_b if self.fitting else 0.0

    @property
    def summary(self) -> str:
        """E.g. "Runs 62 of the library's 75 models, up to 24B parameters, such as
        Mistral Small 24B and Devstral 24B."."""
        if not self.fitting:
            return "No model in the library fits this tier."
        examples = " and ".join(m.name for m in self.fitting[:EXAMPLES])
        every = "all" if len(self.fitting) == self.total else f"{len(self.fitting)} of"
        return (
            f"Runs {every} the library's {self.total} models, up to "
            f"{size_words(self.largest_b)} parameters, such as {examples}."
        )


def size_words(parameters_b: float) -> str:
    """72.7 -> "73B", 0.5 -> "0.5B"."""
    return f"{parameters_b:.0f}B" if parameters_b >= 1 else f"{parameters_b:.1f}B"


@cache
def tier_models(tier_name: str) -> TierModels:
    """The library's models that fit the tier (their smallest build, default context)."""
    tier = TIERS[tier_name]
    models = load_catalog().models
    fitting = [m for m in models if smallest_build(m).fits[tier.name]]
    fitting.sort(key=lambda m: (m.parameters_b, m.released), reverse=True)
    return TierModels(tier=tier, fitting=tuple(fitting), total=len(models))
