"""Vast.ai wire models: only the fields Sizzle reads, tolerant of everything else."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VastOffer(_Wire):
    """One entry of `POST bundles/`: `id` is the ask id to rent, `gpu_ram` is MB per GPU."""

    id: int
    gpu_name: str = ""
    num_gpus: int = 0
    gpu_ram: float | None = None
    dph_total: float | None = None
    reliability2: float | None = None
    reliability: float | None = None
    geolocation: str | None = None


class VastInstance(_Wire):
    """One instance as `GET instances/{id}/` or the listing shows it."""

    id: int
    label: str | None = None
    actual_status: str | None = None
    intended_status: str | None = None
    cur_state: str | None = None
    status_msg: str | None = None
    public_ipaddr: str | None = None
    # {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "41022"}]}: container port -> host ports,
    # only for the ports the rent mapped with `-p`
    ports: dict[str, list[dict[str, Any]] | None] | None = None

    def host_port(self, container_port: int) -> int | None:
        """The public port a mapped container port is reachable on, once Vast has mapped it."""
        mappings = (self.ports or {}).get(f"{container_port}/tcp") or []
        for mapping in mappings:
            try:
                return int(mapping.get("HostPort", ""))
            except (TypeError, ValueError):
                continue
        return None


class VastResult(_Wire):
    """The common answer envelope: `{"success": bool, "error": code, "msg": text, ...}`."""

    success: bool | None = None
    error: str | None = None
    msg: str | None = None
    message: str | None = None
    new_contract: int | None = None

    @property
    def text(self) -> str:
        return self.msg or self.message or self.error or "no detail"


def parse_offers(body: Any) -> list[VastOffer]:
    """The offers of a search answer; the doc shows both a list and a single object."""
    raw = body.get("offers") if isinstance(body, dict) else None
    return _each(raw, VastOffer)


def parse_instances(body: Any) -> list[VastInstance]:
    """The instances of a show or list answer: `instances` is an object for one, else a list."""
    raw = body.get("instances") if isinstance(body, dict) else None
    return _each(raw, VastInstance)


def parse_page(body: Any) -> tuple[list[VastInstance], str | None]:
    """One page of the v1 listing: its instances and the cursor of the next page (None at the
    end). The cursor is `next_token` in the answer; tolerate `after_token` too."""
    if not isinstance(body, dict):
        return [], None
    token = body.get("next_token") or body.get("after_token")
    return parse_instances(body), str(token) if token else None


def parse_result(body: Any) -> VastResult:
    if not isinstance(body, dict):
        return VastResult()
    try:
        return VastResult.model_validate(body)
    except ValidationError:
        return VastResult(success=body.get("success") is True)


def _each(raw: Any, model: type[M]) -> list[M]:
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    parsed: list[M] = []
    for item in items:
        if not isinstance(item, dict) or not item:
            continue
        try:
            parsed.append(model.model_validate(item))
        except ValidationError:
            continue  # one malformed entry must not hide the others
    return parsed
