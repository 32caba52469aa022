"""`sizzle node-agent`: a tiny HTTP endpoint on an Ollama node that reports its GPUs.

GET /metrics answers {"driver", "gpus": [{index, name, utilization_gpu_percent,
memory_used_bytes, memory_total_bytes, temperature_c, power_watts}], "error"}. Readings come
from NVML (`pip install 'sizzle[node-agent]'`, i.e. nvidia-ml-py); a field the GPU does not
support is null, and without NVML or a driver the answer says so and lists no GPUs: no number
is ever made up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

NO_NVML = "NVIDIA driver not found (NVML unavailable)"

Reader = Callable[[], dict[str, Any]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlReader:
    """Reads every GPU through NVML; initializes NVML once, on the first successful read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None

    def _init(self) -> tuple[Any, str | None]:
        if self._nvml is not None:
            return self._nvml, None
        try:
            import pynvml
        except ImportError:
            return None, NO_NVML
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            not_found = (
                getattr(pynvml, "NVMLError_LibraryNotFound", ()),
                getattr(pynvml, "NVMLError_DriverNotLoaded", ()),
            )
            if isinstance(exc, not_found):
                return None, NO_NVML
            return None, f"NVML failed to start: {exc}"
        except OSError as exc:  # the shared library is missing or broken
            return None, f"{NO_NVML}: {exc}"
        self._nvml = pynvml
        return pynvml, None

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            nvml, error = self._init()
            if nvml is None:
                return {"driver": None, "gpus": [], "error": error}
            driver = _field(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except nvml.NVMLError as exc:
                return {"driver": driver, "gpus": [], "error": f"NVML could not count GPUs: {exc}"}
            return {"driver": driver, "gpus": [_gpu(nvml, i) for i in range(count)], "error": None}


def _field(read: Callable[[], Any]) -> Any:
    """One reading, or None when the GPU or driver does not support it."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends: absent, not a crash
        return None


def _gpu(nvml: Any, index: int) -> dict[str, Any]:
    handle = _field(lambda: nvml.nvmlDeviceGetHandleByIndex(index))
    if handle is None:
        return {
            "index": index,
            "name": None,
            "utilization_gpu_percent": None,
            "memory_used_bytes": None,
            "memory_total_bytes": None,
            "temperature_c": None,
            "power_watts": None,
        }
    memory = _field(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    power_mw = _field(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
    return {
        "index": index,
        "name": _field(lambda: _text(nvml.nvmlDeviceGetName(handle))),
        "utilization_gpu_percent": _field(
            lambda: int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        ),
        "memory_used_bytes": _field(lambda: int(memory.used)) if memory is not None else None,
        "memory_total_bytes": _field(lambda: int(memory.total)) if memory is not None else None,
        "temperature_c": _field(
            lambda: int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        ),
        "power_watts": power_mw / 1000 if isinstance(power_mw, int | float) else None,
    }


def create_agent_app(reader: Reader | None = None) -> FastAPI:
    """The agent's app; `reader` returns the /metrics body (NVML by default)."""
    read = reader or NvmlReader()
    app = FastAPI(title="Sizzle node agent", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics")
    def metrics() -> dict[str, Any]:  # sync: NVML calls block, so FastAPI runs it in a thread
        try:
            body = read()
        except Exception as exc:  # noqa: BLE001 - report it; never a 500 without a body
            return {"driver": None, "gpus": [], "error": f"reading the GPUs failed: {exc}"}
        return {
            "driver": body.get("driver"),
            "gpus": body.get("gpus", []),
            "error": body.get("error"),
        }

    return app
