"""The GPU of an instance reached over SSH, as its driver reads it: `nvidia-smi`'s CSV query,
run on the instance through the session's SSH connection.

The readings have the node agent's shape (`sizzle.node_agent`), so the live page shows an
instance's GPU and an operator's node the same way. A field the GPU or driver does not
support (`[N/A]`, `[Not Supported]`) is None, never an estimate.
"""

from __future__ import annotations

import csv
import io
from typing import Any

MIB = 1024 * 1024
# One CSV line per GPU, in this order; with `nounits`: percent, MiB, MiB, degrees C, watts.
FIELDS = (
    "index",
    "name",
    "utilization.gpu",
    "memory.used",
    "memory.total",
    "temperature.gpu",
    "power.draw",
)
GPU_QUERY = f"nvidia-smi --query-gpu={','.join(FIELDS)} --format=csv,noheader,nounits"


class UnreadableGpuQuery(ValueError):
    """What nvidia-smi printed is not its CSV answer to `GPU_QUERY`."""


def parse_gpu_query(text: str) -> list[dict[str, Any]]:
    """The GPUs in nvidia-smi's answer to `GPU_QUERY`, each with the node agent's keys."""
    gpus = []
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if not row:
            continue
        if len(row) != len(FIELDS):
            raise UnreadableGpuQuery(f"nvidia-smi printed {len(row)} fields, not {len(FIELDS)}")
        index, name, utilization, used, total, temperature, power = (v.strip() for v in row)
        used_mib, total_mib = _number(used), _number(total)
        gpus.append(
            {
                "index": _integer(index),
                "name": None if _absent(name) else name,
                "utilization_gpu_percent": _integer(utilization),
                "memory_used_bytes": round(used_mib * MIB) if used_mib is not None else None,
                "memory_total_bytes": round(total_mib * MIB) if total_mib is not None else None,
                "temperature_c": _integer(temperature),
                "power_watts": _number(power),
            }
        )
    return gpus


def _absent(value: str) -> bool:
    return not value or value.startswith("[") or value.upper() == "N/A"


def _number(value: str) -> float | None:
    if _absent(value):
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise UnreadableGpuQuery(f"nvidia-smi printed {value[:40]!r} for a number") from exc


def _integer(value: str) -> int | None:
    number = _number(value)
    return None if number is None else round(number)
