"""The canonical GPU list every provider's names are normalized to."""

from __future__ import annotations

# canonical name -> memory per GPU in GB
GPU_VRAM_GB: dict[str, int] = {
    "RTX 4090": 24,
    "RTX 5090": 32,
    "L40S": 48,
    "A100 40GB": 40,
    "A100 80GB": 80,
    "H100 80GB": 80,
    "H200": 141,
    "B200": 180,
    "B300": 288,
}
