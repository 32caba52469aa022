"""A fake Vast.ai API (v0) with scriptable in-memory state, served under /api/v0.

Answers in Vast's shapes: `{"offers": [...]}`, `{"instances": {...}}` for one instance and a
list for the listing, `{"success": false, "error": code, "msg": text}` for errors, and 429
with a plain-text body and no Retry-After when told to throttle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

API_KEY = "vast-test-key"
PROGRESS: tuple[str | None, ...] = (None, "loading", "running")


@dataclass
class FakeVast:
    api_key: str = API_KEY
    offers: list[dict[str, Any]] = field(default_factory=list)
    instances: dict[int, dict[str, Any]] = field(default_factory=dict)
    # each instance's remaining actual_status steps, one consumed per GET of that instance
    progress: dict[int, list[str | None]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    destroyed: list[int] = field(default_factory=list)
    throttle: int = 0  # answer this many next calls with 429
    throttled: int = 0
    refuse_rent_with_contract: bool = False  # rent creates a stopped instance, says success:false
    gone_as_null: bool = False  # show a gone instance as 200 {"instances": null}, not 404
    taken: set[int] = field(default_factory=set)  # asks still listed whose rent says no_such_ask
    next_id: int = 9000

    def offer(self, offer_id: int, gpu_name: str, **fields: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": offer_id,
            "ask_contract_id": offer_id,
            "machine_id": offer_id + 1,
            "gpu_name": gpu_name,
            "num_gpus": 1,
            "gpu_ram": 24564,
            "dph_base": 0.3,
            "dph_total": 0.35,
            "reliability": 0.99,
            "reliability2": 0.99,
            "rentable": True,
            "rented": False,
            "verification": "verified",
            "geolocation": "Atlantis, AT",
            "search": {"totalHour": 0.35},
        }
        entry.update(fields)
        self.offers.append(entry)
        return entry

    def add_instance(self, label: str, actual_status: str | None = "running") -> int:
        instance_id = self._new_id()
        self.instances[instance_id] = _instance(instance_id, label, actual_status)
        return instance_id

    def bodies(self, method: str, path: str) -> list[Any]:
        return [body for m, p, body in self.requests if m == method and p == path]

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id


def _instance(instance_id: int, label: str, actual_status: str | None) -> dict[str, Any]:
    return {
        "id": instance_id,
        "label": label,
        "actual_status": actual_status,
        "intended_status": "running",
        "cur_state": "running",
        "status_msg": None,
        "gpu_name": "RTX 4090",
        "num_gpus": 1,
        "public_ipaddr": "203.0.113.7 ",
        "ports": {"11434/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41434"}]},
        "dph_total": 0.35,
    }


def _error(status: int, code: str, msg: str) -> JSONResponse:
    return JSONResponse({"success": False, "error": code, "msg": msg}, status_code=status)


def vast_app(fake: FakeVast) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def gatekeeper(request: Request, call_next: Any) -> Response:
        raw = await request.body()
        body: Any = None
        if raw:
            body = json.loads(raw)
        path = request.url.path.removeprefix("/api/v0")
        fake.requests.append((request.method, path, body))
        if fake.throttle > 0:
            fake.throttle -= 1
            fake.throttled += 1
            return PlainTextResponse("API requests too frequent", status_code=429)
        if request.headers.get("authorization") != f"Bearer {fake.api_key}":
            return _error(401, "auth_error", "Invalid user key")
        response: Response = await call_next(request)
        return response

    @app.post("/api/v0/bundles/")
    async def search(request: Request) -> dict[str, Any]:
        query = await request.json()
        names = query.get("gpu_name", {}).get("in")
        found = [o for o in fake.offers if not o.get("rented")]
        if names is not None:
            found = [o for o in found if o["gpu_name"] in names]
        return {"offers": found}

    @app.put("/api/v0/asks/{ask_id}/")
    async def rent(ask_id: int, request: Request) -> Response:
        body = await request.json()
        offer = next((o for o in fake.offers if o["id"] == ask_id and not o.get("rented")), None)
        if offer is None or ask_id in fake.taken:
            return _error(
                410,
                "no_such_ask",
                f"error 410/3907: no_such_ask Instance type {ask_id} is no longer available.",
            )
        if "image" not in body:
            return _error(400, "invalid_args", "error 400/3467: Invalid args: image missing")
        offer["rented"] = True
        instance_id = fake._new_id()
        instance = _instance(instance_id, body.get("label", ""), None)
        instance["gpu_name"] = offer["gpu_name"]
        fake.instances[instance_id] = instance
        if fake.refuse_rent_with_contract:
            instance["actual_status"] = "stopped"
            return JSONResponse(
                {"success": False, "error": "bid_too_low", "new_contract": instance_id}
            )
        fake.progress[instance_id] = list(PROGRESS)
        return JSONResponse(
            {"success": True, "new_contract": instance_id, "instance_api_key": "d15a"}
        )

    @app.get("/api/v0/instances/")
    async def listing(owner: str | None = None) -> dict[str, Any]:
        return {"instances": list(fake.instances.values())}

    @app.get("/api/v0/instances/{instance_id}/")
    async def show(instance_id: int) -> Response:
        instance = fake.instances.get(instance_id)
        if instance is None:
            if fake.gone_as_null:
                return JSONResponse({"instances": None})
            return _error(404, "not_found", "Instance not found")
        steps = fake.progress.get(instance_id)
        if steps:
            instance["actual_status"] = steps.pop(0)
        return JSONResponse({"instances": instance})

    @app.put("/api/v0/instances/{instance_id}/")
    async def manage(instance_id: int, request: Request) -> Response:
        instance = fake.instances.get(instance_id)
        if instance is None:
            return _error(404, "no_such_instance", "Instance not found")
        state = (await request.json()).get("state")
        if state not in ("running", "stopped"):
            return _error(400, "invalid_args", f"bad state {state!r}")
        fake.progress.pop(instance_id, None)
        instance["actual_status"] = state
        instance["intended_status"] = state
        instance["cur_state"] = state
        return JSONResponse({"success": True})

    @app.delete("/api/v0/instances/{instance_id}/")
    async def destroy(instance_id: int) -> Response:
        if fake.instances.pop(instance_id, None) is None:
            return _error(404, "not_found", "Instance not found")
        fake.progress.pop(instance_id, None)
        fake.destroyed.append(instance_id)
        return JSONResponse({"success": True, "msg": "Instance destroyed successfully"})

    return app
