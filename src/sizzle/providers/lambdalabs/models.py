"""Lambda Cloud wire models: only the fields Sizzle reads; unknown fields are ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Region(_Wire):
    name: str
    description: str | None = None


class InstanceTypeInfo(_Wire):
    name: str
    description: str = ""
    price_cents_per_hour: int


class InstanceTypeEntry(_Wire):
    """One value of the `GET /instance-types` dict."""

    instance_type: InstanceTypeInfo
    regions_with_capacity_available: list[Region] = Field(default_factory=list)


class LambdaInstance(_Wire):
    id: str
    name: str | None = None
    ip: str | None = None
    status: str
    region: Region | None = None
    instance_type: InstanceTypeInfo | None = None


class SshKey(_Wire):
    id: str | None = None
    name: str
    public_key: str | None = None


class LaunchResult(_Wire):
    instance_ids: list[str] = Field(default_factory=list)


class TerminateResult(_Wire):
    terminated_instances: list[LambdaInstance] = Field(default_factory=list)


class ErrorDetail(_Wire):
    code: str = "global/unknown"
    message: str = ""
    suggestion: str | None = None
