"""The canonical GPU list, and every provider's GPU names normalized to it."""

from __future__ import annotations

import re

# canonical name -> memory per GPU in GB
GPU_VRAM_GB: dict[str, int] = {
    "RTX 4090": 24,
    "RTX 5090": 32,
    "RTX A6000": 48,
    "L40S": 48,
    "A100 40GB": 40,
    "A100 80GB": 80,
    "H100 80GB": 80,
    "H200": 141,
    "B200": 180,
    "B300": 288,
}

# (pattern over a lower-cased name with '_', '-' and repeated spaces folded to one space,
#  canonical name); the first match wins, so the more specific patterns come first.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), canonical)
    for pattern, canonical in (
        (r"\brtx ?5090\b", "RTX 5090"),
        (r"\brtx ?4090\b", "RTX 4090"),
        (r"\brtx ?a6000\b", "RTX A6000"),
        (r"\bl40s\b", "L40S"),
        (r"\ba100\b.*\b80 ?gb\b", "A100 80GB"),
        (r"\ba100\b.*\b40 ?gb\b", "A100 40GB"),
        (r"\ba100\b", "A100 40GB"),  # an A100 that does not say its size is the 40 GB one
        (r"\bh100\b", "H100 80GB"),  # SXM, PCIe, HBM3: all 80 GB (NVL is 94 GB, still >= 80)
        (r"\bh200\b", "H200"),
        (r"\bb300\b", "B300"),
        (r"\bb200\b", "B200"),
    )
)


def normalize_gpu_name(raw: str, *, vram_gb: float | None = None) -> str | None:
    """The canonical name of a provider's GPU name, or None for a GPU Sizzle does not rent.

    Vast "H100 SXM", RunPod "NVIDIA H100 80GB HBM3" and Lambda "gpu_8x_h100_sxm5" all give
    "H100 80GB"; "NVIDIA A100 80GB PCIe" gives "A100 80GB". Where the name leaves the size
    open (Vast "A100 SXM4"), the memory the provider reports per GPU decides.
    """
    folded = re.sub(r"[\s_\-]+", " ", raw.lower()).strip()
    for pattern, canonical in _PATTERNS:
        if pattern.search(folded):
            if canonical == "A100 40GB" and vram_gb is not None and vram_gb >= 70:
                return "A100 80GB"
            return canonical
    return None
