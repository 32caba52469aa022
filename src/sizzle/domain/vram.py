"""How much GPU memory a model needs to run, and which tier gives it that. Pure, no I/O.

Units: every figure here is in GB = 10**9 bytes, the unit GPU memory is marketed in and the
unit the tiers' ``min_vram_gb`` is written in (24, 40, 80...). A GiB is 1.074 GB.

The estimate is for inference of one sequence (batch 1) at the given context length:

    total = weights + KV cache + overhead

- weights   = parameters x bits_per_weight / 8. ``bits_per_weight`` is the *effective* figure
  of the format, block scales included: 16 for FP16/BF16, 8.5 for GGUF Q8_0, ~4.85 for
  Q4_K_M (Llama 3.1 8B Q4_K_M is a 4.92 GB file over 8.03B parameters = 4.9 bits).
- KV cache  = 2 (K and V) x layers x kv_heads x head_dim x context x kv_bits / 8 bytes, when
  the architecture is known. This is exact for standard and grouped-query attention (the
  formula NVIDIA's "Mastering LLM Techniques: Inference Optimization" uses; vLLM and
  llama.cpp allocate exactly this). Otherwise, see ``approx_kv_bytes_per_token``.
- overhead  = a fixed part (CUDA context ~0.3-0.5 GB, plus the runtime's compute/scratch
  buffers) of ``DEFAULT_FIXED_OVERHEAD_GB`` plus ``PROPORTIONAL_OVERHEAD`` (10%) of the
  weights for activations and allocator fragmentation. Sources: BentoML "Calculating GPU
  memory for serving LLMs" puts all overhead at 10-30% of the weights (20% typical, that
  20% also covering the KV cache, which we count separately); llama.cpp's compute buffers
  for 7-70B models are a few hundred MB to ~1.5 GB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sizzle.domain.gpus import GPU_VRAM_GB
from sizzle.domain.tiers import TIERS, Tier

BYTES_PER_GB = 1_000_000_000

# CUDA context + runtime scratch buffers, in GB.
DEFAULT_FIXED_OVERHEAD_GB = 1.0
# Activations and fragmentation, as a fraction of the weights.
PROPORTIONAL_OVERHEAD = 0.10

# When the architecture is not given: KV bytes per token at 16 bits per value, per
# sqrt(billions of parameters). See ``approx_kv_bytes_per_token``.
APPROX_KV_BYTES_PER_TOKEN_PER_SQRT_B = 120_000

# A tier must keep this fraction of its VRAM free beyond the estimate: the driver and ECC
# reserve some memory, the allocator fragments, and the estimate is an estimate.
SAFETY_MARGIN = 0.05

# At or under this total, a recent laptop can run the model: 8 GB is the VRAM of the common
# laptop GPUs (RTX 4060/4070 Laptop), and what a 16 GB Apple-silicon Mac lets the GPU use
# with room to spare (macOS gives the GPU about two thirds of unified memory).
LAPTOP_VRAM_GB = 8.0


@dataclass(frozen=True)
class VramEstimate:
    """GPU memory a model needs, in GB (10**9 bytes)."""

    weights_gb: float
    kv_cache_gb: float
    overhead_gb: float
    total_gb: float


def approx_kv_bytes_per_token(parameters_b: float, kv_bits: float = 16) -> float:
    """KV cache bytes per token of context when only the parameter count is known.

    Rule: ``120_000 x sqrt(parameters in billions) x kv_bits / 16`` bytes per token.

    Reasoning: per token, the cache holds 2 x layers x kv_width values, while the parameter
    count grows as layers x d_model**2; for the usual depth/width ratios the KV per token
    therefore grows roughly with the square root of the parameters, not linearly. The
    constant is an upper envelope over current grouped-query-attention models (fp16 bytes
    per token / sqrt(B params)): Llama 3.1 8B 46k, 70B 39k, 405B 26k; Mistral 7B 49k;
    Qwen 2.5 7B 21k, 32B 46k; Mixtral 8x7B 19k; Gemma 3 27B 98k; Gemma 2 9B 113k (the
    highest). So it overestimates most models 2-4x, which is the side to err on. Older
    multi-head-attention models (Llama 2 7B/13B, Phi-3 mini: ~200k) exceed it; pass their
    architecture.
    """
    if parameters_b <= 0:
        return 0.0
    return APPROX_KV_BYTES_PER_TOKEN_PER_SQRT_B * math.sqrt(parameters_b) * kv_bits / 16


def estimate_vram_gb(
    *,
    parameters_b: float,
    bits_per_weight: float,
    context_length: int,
    n_layers: int | None = None,
    n_kv_heads: int | None = None,
    head_dim: int | None = None,
    kv_bits: float = 16,
    overhead_gb: float = DEFAULT_FIXED_OVERHEAD_GB,
) -> VramEstimate:
    """GPU memory, in GB, to run a model of ``parameters_b`` billion parameters.

    ``bits_per_weight`` is the effective bits of the weight format; ``context_length`` the
    tokens of context to hold; ``n_layers``, ``n_kv_heads`` and ``head_dim`` the attention
    shape (all three, or the KV cache is approximated from the parameter count);
    ``kv_bits`` the bits of each cached value (16 for fp16, 8 for an fp8/q8 cache);
    ``overhead_gb`` the fixed runtime overhead, to which 10% of the weights is added.
    """
    if parameters_b < 0 or bits_per_weight < 0 or context_length < 0 or kv_bits < 0:
        raise ValueError("sizes must not be negative")
    if overhead_gb < 0:
        raise ValueError("overhead must not be negative")

    weights_gb = parameters_b * bits_per_weight / 8  # 1e9 params x bytes/param = GB

    if n_layers is not None and n_kv_heads is not None and head_dim is not None:
        kv_bytes_per_token = 2 * n_layers * n_kv_heads * head_dim * kv_bits / 8
    else:
        kv_bytes_per_token = approx_kv_bytes_per_token(parameters_b, kv_bits)
    kv_cache_gb = kv_bytes_per_token * context_length / BYTES_PER_GB

    total_overhead_gb = overhead_gb + PROPORTIONAL_OVERHEAD * weights_gb
    return VramEstimate(
        weights_gb=weights_gb,
        kv_cache_gb=kv_cache_gb,
        overhead_gb=total_overhead_gb,
        total_gb=weights_gb + kv_cache_gb + total_overhead_gb,
    )


def tier_vram_gb(tier: Tier) -> float:
    """The VRAM, in GB, that every machine of a tier has in all, over all its GPUs.

    That is the tier's ``min_vram_gb``, or, where it is lower, its fewest GPUs times the
    smallest of its GPU types: ultra is always 8 x B200/B300, so 8 x 180 GB, though its
    ``min_vram_gb`` says 192.
    """
    per_gpu = [GPU_VRAM_GB[name] for name in tier.gpu_types if name in GPU_VRAM_GB]
    from_gpus = tier.min_gpus * min(per_gpu) if per_gpu else 0
    return float(max(tier.min_vram_gb, from_gpus))


def fits(tier: Tier, estimate: VramEstimate) -> bool:
    """Whether the estimate fits the tier's total VRAM with ``SAFETY_MARGIN`` (5%) kept free."""
    return estimate.total_gb <= tier_vram_gb(tier) * (1 - SAFETY_MARGIN)


def cheapest_tier(estimate: VramEstimate) -> Tier | None:
    """The cheapest tier (by price per minute) the estimate fits, or None if none does."""
    for tier in sorted(TIERS.values(), key=lambda t: (t.price_micros_per_minute, t.name)):
        if fits(tier, estimate):
            return tier
    return None


def runs_on_a_laptop(estimate: VramEstimate) -> bool:
    """At most ``LAPTOP_VRAM_GB`` (8 GB) in all: "you may not need a rented GPU for this"."""
    return estimate.total_gb <= LAPTOP_VRAM_GB
