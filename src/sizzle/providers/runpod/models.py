"""RunPod GraphQL wire models: only the fields Sizzle reads, tolerant of anything else."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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


class RuntimePort(_Wire):
    ip: str | None = None
    is_ip_public: bool | None = Field(None, alias="isIpPublic")
    private_port: int | None = Field(None, alias="privatePort")
    public_port: int | None = Field(None, alias="publicPort")
    type: str | None = None


class PodRuntime(_Wire):
    uptime_in_seconds: int | None = Field(None, alias="uptimeInSeconds")
    ports: list[RuntimePort] | None = None


class Pod(_Wire):
    id: str
    name: str | None = None
    desired_status: str | None = Field(None, alias="desiredStatus")
    gpu_count: int | None = Field(None, alias="gpuCount")
    runtime: PodRuntime | None = None
