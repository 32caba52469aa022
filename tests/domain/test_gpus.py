"""Every provider's GPU names map to one canonical list."""

from __future__ import annotations

import pytest

from sizzle.domain.gpus import GPU_VRAM_GB, normalize_gpu_name


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("H100 SXM", "H100 80GB"),
        ("H100 PCIE", "H100 80GB"),
        ("NVIDIA H100 80GB HBM3", "H100 80GB"),
        ("gpu_8x_h100_sxm5", "H100 80GB"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB"),
        ("gpu_1x_a100_sxm4_80gb", "A100 80GB"),
        ("gpu_1x_a100", "A100 40GB"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("RTX_4090", "RTX 4090"),
        ("RTX 5090", "RTX 5090"),
        ("H200", "H200"),
        ("NVIDIA B200", "B200"),
        ("gpu_8x_b200_sxm6", "B200"),
        ("L40S", "L40S"),
        ("RTX A6000", "RTX A6000"),
    ],
)
def test_provider_names_normalize(raw: str, canonical: str) -> None:
    assert normalize_gpu_name(raw) == canonical
    assert canonical in GPU_VRAM_GB


def test_an_a100_of_unstated_size_is_decided_by_its_memory() -> None:
    assert normalize_gpu_name("A100 SXM4", vram_gb=80) == "A100 80GB"
    assert normalize_gpu_name("A100 SXM4", vram_gb=40) == "A100 40GB"


@pytest.mark.parametrize("raw", ["Tesla V100", "GH200", "gpu_1x_gh200", "RTX 3090", ""])
def test_gpus_sizzle_does_not_rent_are_none(raw: str) -> None:
    assert normalize_gpu_name(raw) is None
