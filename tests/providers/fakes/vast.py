"""A fake Vast.ai API, written from Vast's documentation and its own client (vast-ai/vast-cli),
not from what Sizzle sends: it refuses what Vast would refuse.

- Bearer auth; anything else is 401 `auth_error`.
- `POST /api/v0/bundles/` answers `{"offers": [...]}`.
- `PUT /api/v0/asks/{id}/` needs `image`; with `runtype: "args"` Vast runs `onstart` as the
  container's entrypoint and `args` as its argv, so `onstart` must be an executable path and
  `args` a list of strings (400 `invalid_args` otherwise); `env` is a dict of strings keyed by
  an environment variable name or a `-p HOST:CONTAINER` port map. An ask that is rented or
  unknown is `no_such_ask` (410 by default, as the docs' message says; 404 where told).
- `GET /api/v0/instances/?owner=me` answers 410 (the v0 listing is gone for newer accounts);
  `GET /api/v1/instances/` pages with a cursor: the answer's `next_token`, sent back as
  `after_token` (the SDK's `show_instances`), a few rows a page so that tests cross pages.
- `GET /api/v0/instances/{id}/` answers `{"instances": {...}}`; a new instance's
  `actual_status` goes null -> loading -> running on its own time (the test's clock, or
  `advance()`), never because it was asked; `ports` lists only the ports mapped with `-p`,
  once it runs.
- `PUT /api/v0/instances/{id}/` with a state, `DELETE` to destroy; an unknown id is 404.
- 429 with a plain-text body and no Retry-After, when told to throttle.

Every request is recorded (method, path, JSON body) so tests can read the argv and env sent.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from sizzle.clock import Clock

API_KEY = "vast-test-key"
PROGRESS: tuple[str | None, ...] = (None, "loading", "running")
PUBLIC_IPADDR = "203.0.113.7 "  # Vast pads it with whitespace
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PORT_MAP = re.compile(r"^-p (\d{1,5}):(\d{1,5})(/(tcp|udp))?$")


@dataclass
class FakeVast:
    api_key: str = API_KEY
    clock: Clock | None = None  # with a clock, booting moves one step every `step_seconds`
    step_seconds: float = 5.0
    page_size: int = 2  # rows per v1 page (Vast's own cap is 25)
    no_such_ask_status: int = 410
    gone_code: str = "not_found"  # what an unknown instance answers: not_found|no_such_instance
    offers: list[dict[str, Any]] = field(default_factory=list)
    instances: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    queries: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    destroyed: list[int] = field(default_factory=list)
    throttle: int = 0  # answer this many next calls with 429
    throttled: int = 0
    refuse_rent_with_contract: bool = False  # rent creates a stopped instance, says success:false
    gone_as_null: bool = False  # show a gone instance as 200 {"instances": null}, not 404
    taken: set[int] = field(default_factory=set)  # asks still listed whose rent says no_such_ask
    forbidden: set[int] = field(default_factory=set)  # asks whose rent answers 403
    next_id: int = 9000
    next_host_port: int = 41000
    # booting instances: the step reached and, with a clock, when it began
    _booting: dict[int, tuple[int, datetime | None]] = field(default_factory=dict)

    def offer(self, offer_id: int, gpu_name: str, **fields: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": offer_id,
            "ask_contract_id": offer_id,
            "machine_id": offer_id + 1,
            "gpu_name": gpu_name,
            "num_gpus": 1,
            "gpu_ram": 24564,
            "disk_space": 500.0,
            "dph_base": 0.3,
            "dph_total": 0.35,
            "reliability": 0.99,
            "reliability2": 0.99,
            "direct_port_count": 20,
            "rentable": True,
            "rented": False,
            "verification": "verified",
            "geolocation": "Atlantis, AT",
            "search": {"totalHour": 0.35},
        }
        entry.update(fields)
        self.offers.append(entry)
        return entry

    def add_instance(
        self,
        label: str | None,
        actual_status: str | None = "running",
        *,
        ports: tuple[int, ...] = (22,),
    ) -> int:
        """An instance that is already there (rented by someone, or earlier), in that state."""
        instance_id = self._new_id()
        env = {f"-p {port}:{port}": "1" for port in ports}
        self.instances[instance_id] = self._instance(instance_id, label, env, actual_status)
        if actual_status == "running":
            self._publish_ports(instance_id)
        return instance_id

    def advance(self, instance_id: int | None = None) -> None:
        """Move booting instances (or one) a step: null -> loading -> running."""
        for booting in [instance_id] if instance_id is not None else list(self._booting):
            step, began = self._booting[booting]
            self._set_step(booting, step + 1, began)

    def bodies(self, method: str, path: str) -> list[Any]:
        return [body for m, p, body in self.requests if m == method and p == path]

    def _catch_up(self) -> None:
        if self.clock is None:
            return
        now = self.clock.now()
        for instance_id, (step, began) in list(self._booting.items()):
            if began is not None:
                due = int((now - began).total_seconds() // self.step_seconds)
                if due > step:
                    self._set_step(instance_id, due, began)

    def _set_step(self, instance_id: int, step: int, began: datetime | None) -> None:
        instance = self.instances.get(instance_id)
        if instance is None:
            self._booting.pop(instance_id, None)
            return
        step = min(step, len(PROGRESS) - 1)
        instance["actual_status"] = PROGRESS[step]
        if PROGRESS[step] == "running":
            self._booting.pop(instance_id, None)
            self._publish_ports(instance_id)
        else:
            self._booting[instance_id] = (step, began)

    def _publish_ports(self, instance_id: int) -> None:
        instance = self.instances[instance_id]
        ports: dict[str, list[dict[str, str]]] = {}
        for key in instance["_mapped"]:
            self.next_host_port += 1
            ports[f"{key}/tcp"] = [{"HostIp": "0.0.0.0", "HostPort": str(self.next_host_port)}]  # noqa: S104
        instance["ports"] = ports

    def _instance(
        self, instance_id: int, label: str | None, env: dict[str, str], actual_status: str | None
    ) -> dict[str, Any]:
        mapped = [int(m.group(2)) for key in env if (m := _PORT_MAP.match(key))]
        return {
            "id": instance_id,
            "label": label,
            "actual_status": actual_status,
            "intended_status": "running",
            "cur_state": "running",
            "next_state": "running",
            "status_msg": None,
            "image_uuid": "ollama/ollama:latest",
            "image_runtype": "args",
            "extra_env": [[k, v] for k, v in env.items() if _ENV_NAME.match(k)],
            "gpu_name": "RTX 4090",
            "num_gpus": 1,
            "public_ipaddr": PUBLIC_IPADDR,
            "ports": {},
            "dph_total": 0.35,
            "start_date": 1772366400.0,
            "_mapped": mapped,
        }

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id


def _public(instance: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in instance.items() if not k.startswith("_")}


def _error(status: int, code: str, msg: str) -> JSONResponse:
    return JSONResponse({"success": False, "error": code, "msg": msg}, status_code=status)


def _invalid(msg: str) -> JSONResponse:
    return _error(400, "invalid_args", f"error 400/3467: Invalid args: {msg}")


def launch_refusal(body: Any) -> str | None:
    """Why Vast would refuse this create-instance body, or None."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if not isinstance(body.get("image"), str) or not body["image"]:
        return "image is required"
    if "disk" in body and not (isinstance(body["disk"], int | float) and body["disk"] > 0):
        return "disk must be a positive number of GB"
    env = body.get("env", {})
    if not isinstance(env, dict):
        return "env must be an object"
    for key, value in env.items():
        if not isinstance(value, str):
            return f"env {key!r}: values are strings"
        if not (_ENV_NAME.match(key) or _PORT_MAP.match(key)):
            return f"env {key!r} is neither a variable name nor a -p port map"
    if body.get("runtype") == "args":
        onstart = body.get("onstart")
        if onstart is not None and (
            not isinstance(onstart, str) or not onstart.startswith("/") or re.search(r"\s", onstart)
        ):
            return f"onstart is the entrypoint for args launches, not a command: {onstart!r}"
        args = body.get("args")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return "args must be a list of strings"
    return None


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
        fake.queries.append((path, dict(request.query_params)))
        if fake.throttle > 0:
            fake.throttle -= 1
            fake.throttled += 1
            return PlainTextResponse("API requests too frequent: endpoint threshold=2.0", 429)
        if request.headers.get("authorization") != f"Bearer {fake.api_key}":
            return _error(401, "auth_error", "Invalid user key")
        fake._catch_up()
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
            status = fake.no_such_ask_status
            return _error(
                status,
                "no_such_ask",
                f"error {status}/3907: no_such_ask Instance type {ask_id} is no longer available.",
            )
        if ask_id in fake.forbidden:
            return _error(403, "forbidden", f"error 403: ask {ask_id} is not available to you")
        refusal = launch_refusal(body)
        if refusal:
            return _invalid(refusal)
        offer["rented"] = True
        instance_id = fake._new_id()
        instance = fake._instance(instance_id, body.get("label"), body.get("env", {}), None)
        instance["gpu_name"] = offer["gpu_name"]
        instance["onstart"] = body.get("onstart")
        instance["image_args"] = body.get("args")
        fake.instances[instance_id] = instance
        if fake.refuse_rent_with_contract:
            instance["actual_status"] = "stopped"
            return JSONResponse(
                {"success": False, "error": "bid_too_low", "new_contract": instance_id}
            )
        fake._booting[instance_id] = (0, fake.clock.now() if fake.clock else None)
        return JSONResponse(
            {"success": True, "new_contract": instance_id, "instance_api_key": "d15a"}
        )

    @app.get("/api/v0/instances/")
    async def legacy_listing() -> Response:
        return _error(410, "gone", "this listing is retired: use GET /api/v1/instances/")

    @app.get("/api/v1/instances/")
    async def listing(limit: int = 25, after_token: str | None = None) -> dict[str, Any]:
        after = int(base64.urlsafe_b64decode(after_token)) if after_token else -1
        rows = sorted(
            (i for i in fake.instances.values() if i["id"] > after), key=lambda i: i["id"]
        )
        page = rows[: min(limit, fake.page_size)]
        more = len(rows) > len(page)
        token = base64.urlsafe_b64encode(str(page[-1]["id"]).encode()).decode() if more else None
        return {
            "success": True,
            "instances": [_public(i) for i in page],
            "next_token": token,
            "total_instances": len(fake.instances),
        }

    @app.get("/api/v0/instances/{instance_id}/")
    async def show(instance_id: int) -> Response:
        instance = fake.instances.get(instance_id)
        if instance is None:
            if fake.gone_as_null:
                return JSONResponse({"instances": None})
            return _error(404, fake.gone_code, "Instance not found")
        return JSONResponse({"instances": _public(instance)})

    @app.put("/api/v0/instances/{instance_id}/")
    async def manage(instance_id: int, request: Request) -> Response:
        instance = fake.instances.get(instance_id)
        if instance is None:
            return _error(404, "no_such_instance", "Instance not found")
        state = (await request.json()).get("state")
        if state not in ("running", "stopped"):
            return _invalid(f"bad state {state!r}")
        fake._booting.pop(instance_id, None)
        instance["actual_status"] = state
        instance["intended_status"] = state
        instance["cur_state"] = state
        if state == "running":
            fake._publish_ports(instance_id)
        return JSONResponse({"success": True})

    @app.delete("/api/v0/instances/{instance_id}/")
    async def destroy(instance_id: int) -> Response:
        if fake.instances.pop(instance_id, None) is None:
            return _error(404, fake.gone_code, "Instance not found")
        fake._booting.pop(instance_id, None)
        fake.destroyed.append(instance_id)
        return JSONResponse({"success": True, "msg": "Instance destroyed successfully"})

    return app
