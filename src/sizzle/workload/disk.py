"""How much disk a cloud instance is rented with: the same rule on every provider."""

from __future__ import annotations

import math

# The image and Ollama's working files, besides the model's weights.
DISK_HEADROOM_GB = 30
MIN_DISK_GB = 50
MAX_DISK_GB = 2000


def instance_disk_gb(vram_gb: float) -> int:
    """The disk, in GB, for an instance with `vram_gb` of GPU memory in all: a model is placed
    only where its weights fit the VRAM, so they fit in that much disk too, plus the headroom."""
    return min(max(math.ceil(vram_gb) + DISK_HEADROOM_GB, MIN_DISK_GB), MAX_DISK_GB)
