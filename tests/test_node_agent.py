"""The node agent: the documented JSON shape, and a clear answer where there is no NVML."""

from __future__ import annotations

import builtins
from typing import Any

import httpx
import pytest

from sizzle import node_agent
from sizzle.node_agent import NO_NVML, NvmlReader, create_agent_app

GPU_KEYS = {
    "index",
    "name",
    "utilization_gpu_percent",
    "memory_used_bytes",
    "memory_total_bytes",
    "temperature_c",
    "power_watts",
}


async def _get(app: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent.test") as http:
        return await http.get("/metrics")


async def test_without_nvml_the_agent_says_so_and_invents_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_pynvml(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    response = await _get(create_agent_app(NvmlReader()))
    assert response.status_code == 200
    assert response.json() == {"driver": None, "gpus": [], "error": NO_NVML}


async def test_on_this_machine_the_answer_is_either_readings_or_a_clear_error() -> None:
    body = (await _get(create_agent_app())).json()
    assert set(body) == {"driver", "gpus", "error"}
    if body["error"]:
        assert body["gpus"] == [] and body["driver"] is None
    for gpu in body["gpus"]:
        assert set(gpu) == GPU_KEYS


class _Unsupported(Exception):
    pass


class _FakeNvml:
    """pynvml's surface, for one GPU that does not report power."""

    NVML_TEMPERATURE_GPU = 0
    NVMLError = _Unsupported

    class _Memory:
        used = 1_073_741_824
        total = 25_757_220_864

    class _Rates:
        gpu = 37
        memory = 10

    def nvmlSystemGetDriverVersion(self) -> bytes:  # noqa: N802 - pynvml's names
        return b"550.54.15"

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:  # noqa: N802
        return object()

    def nvmlDeviceGetName(self, handle: object) -> bytes:  # noqa: N802
        return b"NVIDIA GeForce RTX 4090"

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> Any:  # noqa: N802
        return self._Memory()

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> Any:  # noqa: N802
        return self._Rates()

    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int:  # noqa: N802
        return 61

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:  # noqa: N802
        raise _Unsupported("Not Supported")


async def test_nvml_readings_have_the_documented_shape_and_unsupported_is_null() -> None:
    reader = NvmlReader()
    reader._nvml = _FakeNvml()  # as if nvmlInit had succeeded
    body = (await _get(create_agent_app(reader))).json()
    assert body == {
        "driver": "550.54.15",
        "error": None,
        "gpus": [
            {
                "index": 0,
                "name": "NVIDIA GeForce RTX 4090",
                "utilization_gpu_percent": 37,
                "memory_used_bytes": 1_073_741_824,
                "memory_total_bytes": 25_757_220_864,
                "temperature_c": 61,
                "power_watts": None,
            }
        ],
    }


async def test_a_fake_reader_is_served_as_is() -> None:
    gpu = dict.fromkeys(GPU_KEYS) | {"index": 0, "name": "H100", "power_watts": 312.5}
    body = (await _get(create_agent_app(lambda: {"driver": "560.1", "gpus": [gpu]}))).json()
    assert body == {"driver": "560.1", "gpus": [gpu], "error": None}


async def test_a_failing_reader_is_an_error_not_a_crash() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    response = await _get(create_agent_app(broken))
    assert response.status_code == 200
    assert response.json() == {"driver": None, "gpus": [], "error": "reading the GPUs failed: boom"}


def test_module_names_the_missing_driver() -> None:
    assert node_agent.NO_NVML == "NVIDIA driver not found (NVML unavailable)"
