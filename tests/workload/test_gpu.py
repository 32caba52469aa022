"""Reading nvidia-smi's CSV answer (shared/contracts/providers.md, section 5): one line per
GPU, the fields in the order asked, no units; `[N/A]` or `[Not Supported]` where the GPU or
driver cannot tell."""

from __future__ import annotations

import pytest

from sizzle.workload.gpu import GPU_QUERY, MIB, UnreadableGpuQuery, parse_gpu_query


def test_the_query_asks_for_csv_without_header_or_units() -> None:
    assert GPU_QUERY.startswith("nvidia-smi --query-gpu=index,name,utilization.gpu,")
    assert GPU_QUERY.endswith(" --format=csv,noheader,nounits")


def test_each_line_is_one_gpu_in_the_node_agents_shape() -> None:
    answer = (
        "0, NVIDIA H100 80GB HBM3, 97, 61234, 81559, 71, 645.32\n"
        "1, NVIDIA H100 80GB HBM3, 0, 4, 81559, 33, 69.87\n"
    )
    first, second = parse_gpu_query(answer)
    assert first == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "utilization_gpu_percent": 97,
        "memory_used_bytes": 61234 * MIB,
        "memory_total_bytes": 81559 * MIB,
        "temperature_c": 71,
        "power_watts": 645.32,
    }
    assert (second["index"], second["memory_used_bytes"]) == (1, 4 * MIB)


def test_what_the_gpu_cannot_tell_is_absent_not_zero() -> None:
    (gpu,) = parse_gpu_query("0, NVIDIA GeForce RTX 4090, [N/A], 512, 24564, 40, [Not Supported]\n")
    assert gpu["utilization_gpu_percent"] is None
    assert gpu["power_watts"] is None
    assert gpu["memory_used_bytes"] == 512 * MIB


def test_no_gpu_is_an_empty_list() -> None:
    assert parse_gpu_query("") == []


@pytest.mark.parametrize(
    "answer",
    [
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
        "0, NVIDIA H100, lots, 1, 2, 3, 4\n",
    ],
)
def test_anything_else_is_refused(answer: str) -> None:
    with pytest.raises(UnreadableGpuQuery):
        parse_gpu_query(answer)
