"""RunPod wire models: only the fields Sizzle reads, tolerant of anything else.

`Pod` is the REST v1 pod object (`GET /pods/{id}`); `GpuType` and `LowestPrice` come from
the GraphQL `gpuTypes` query, which is still the only place RunPod publishes prices.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class LowestPrice(_Wire):
    uninterruptable_price: float | None = Field(None, alias="uninterruptablePrice")
    stock_status: str | None = Field(None, alias="stockStatus")


class GpuType(_Wire):
    id: str
    display_name: str | None = Field(None, alias="displayName")
    memory_in_gb: float | None = Field(None, alias="memoryInGb")
    max_gpu_count: int | None = Field(None, alias="maxGpuCount")
    secure_price: float | None = Field(None, alias="securePrice")
    community_price: float | None = Field(None, alias="communityPrice")


class Pod(_Wire):
    """A pod as the REST API shows it. `publicIp` and `portMappings` stay empty while the pod
    initializes; `portMappings` maps a container port ("22") to its public port."""

    id: str
    name: str | None = None
    desired_status: str | None = Field(None, alias="desiredStatus")
    gpu_count: int | None = Field(None, alias="gpuCount")
    public_ip: str | None = Field(None, alias="publicIp")
    port_mappings: dict[str, Any] | None = Field(None, alias="portMappings")

    def public_port(self, container_port: int) -> int | None:
        """The public port a container port is reachable on, once RunPod has mapped it."""
        raw = (self.port_mappings or {}).get(str(container_port))
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            return None
        try:
            port = int(raw)
        except (TypeError, ValueError):
            return None
        return port if 0 < port < 65536 else None


def parse_pod(body: Any) -> Pod | None:
    """A pod object, or None where the body is not one."""
    if not isinstance(body, dict):
        return None
    try:
        return Pod.model_validate(body)
    except ValidationError:
        return None


def parse_pods(body: Any) -> list[Pod]:
    """The pods of a listing: a JSON array (tolerating a `{"pods": [...]}` envelope)."""
    raw = body.get("pods") if isinstance(body, dict) else body
    if not isinstance(raw, list):
        return []
    return [pod for item in raw if (pod := parse_pod(item)) is not None]
