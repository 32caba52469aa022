"""A fake RunPod API, written from RunPod's documentation (the REST v1 OpenAPI spec at
docs.runpod.io/api-reference), not from what Sizzle sends: it refuses what RunPod would.

- Bearer auth everywhere; anything else is 401.
- REST under `/v1`: `POST /pods` needs `imageName` and `gpuTypeIds` (a list); `cloudType` is
  SECURE or COMMUNITY; `ports` are `N/tcp` or `N/http` strings; `env` is an object of strings;
  `dockerEntrypoint`/`dockerStartCmd` are lists of strings that replace the image's
  ENTRYPOINT/CMD (`[]` keeps the image's). The container's argv is recorded per pod. It
  answers 201 with the pod.
- `GET /pods` (a JSON array), `GET /pods/{id}`, `POST /pods/{id}/stop|start`, `DELETE
  /pods/{id}` (204). An unknown pod is 404.
- A created or started pod reads `desiredStatus: RUNNING` at once, but `publicIp` and
  `portMappings` stay empty while it initializes: `boot_seconds` on the test's clock (or
  `boot_polls` reads without a clock). Only exposed `/tcp` ports get a mapping. Stopping
  clears both (and the container disk).
- `no_capacity`: create and start answer 400 with RunPod's capacity message (create does for
  a GPU type in `sold_out` too, though prices still list it).
  `resume_without_gpu`: start brings the pod back with `gpuCount: 0`.
- GraphQL at `/graphql` for prices only (`gpuTypes` with aliased `lowestPrice`), errors as
  HTTP 200 with an `errors` list, as RunPod does.
- `rate_limit`: the next N requests answer 429.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sizzle.clock import Clock

NO_CAPACITY = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)
PUBLIC_IP = "203.0.113.20"
# the ollama/ollama image
IMAGE_ENTRYPOINT = ["/bin/ollama"]
IMAGE_CMD = ["serve"]
_PORT = re.compile(r"^(\d{1,5})/(tcp|http)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class FakeGpuType:
    id: str
    display_name: str
    memory_in_gb: int
    price: float | None  # $/h per GPU (securePrice and lowestPrice.uninterruptablePrice)
    stock: dict[int, str | None] = field(default_factory=lambda: {1: "High"})
    max_gpu_count: int = 8


@dataclass
class FakePod:
    id: str
    name: str
    gpu_type_id: str
    gpu_count: int
    image: str
    env: dict[str, str]
    ports: list[str]
    argv: list[str]
    desired_status: str = "RUNNING"
    body: dict[str, Any] = field(default_factory=dict)
    booting_since: datetime | None = None
    polls_left: int = 0
    public_ip: str | None = None
    port_mappings: dict[str, int] = field(default_factory=dict)


@dataclass
class FakeRunPod:
    api_key: str = "rp-test-key"
    clock: Clock | None = None
    boot_seconds: float = 5.0  # with a clock: how long a pod initializes
    boot_polls: int = 1  # without a clock: reads answered while it initializes
    gpu_types: list[FakeGpuType] = field(default_factory=list)
    pods: dict[str, FakePod] = field(default_factory=dict)
    no_capacity: bool = False
    resume_without_gpu: bool = False
    sold_out: set[str] = field(default_factory=set)  # GPU types still listed, not rentable
    rate_limit: int = 0
    fail_with: list[str | None] = field(default_factory=list)  # GraphQL errors to answer
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _ports: itertools.count[int] = field(default_factory=lambda: itertools.count(30001))

    def add_pod(self, name: str, *, status: str = "RUNNING", gpu_count: int = 1) -> FakePod:
        """A pod that is already there (someone's, or an earlier one), up if running."""
        pod = FakePod(
            id=f"pod{next(self._ids):010d}",
            name=name,
            gpu_type_id="NVIDIA GeForce RTX 4090",
            gpu_count=gpu_count,
            image="other/image",
            env={},
            ports=["22/tcp"],
            argv=["/bin/other"],
            desired_status=status,
        )
        self.pods[pod.id] = pod
        if status == "RUNNING":
            self._publish(pod)
        return pod

    def calls(self, method: str, path: str) -> list[Any]:
        """The bodies sent with `method path` (path below `/v1`), in order."""
        return [body for m, p, body in self.requests if m == method and p == path]

    def _boot(self, pod: FakePod) -> None:
        pod.desired_status = "RUNNING"
        pod.public_ip, pod.port_mappings = None, {}
        pod.booting_since = self.clock.now() if self.clock else None
        pod.polls_left = self.boot_polls

    def _catch_up(self, pod: FakePod) -> None:
        if pod.desired_status != "RUNNING" or pod.public_ip is not None:
            return
        if self.clock is not None and pod.booting_since is not None:
            if (self.clock.now() - pod.booting_since).total_seconds() >= self.boot_seconds:
                self._publish(pod)
        elif pod.polls_left > 0:
            pod.polls_left -= 1
        else:
            self._publish(pod)

    def _publish(self, pod: FakePod) -> None:
        pod.public_ip = PUBLIC_IP
        pod.port_mappings = {
            m.group(1): next(self._ports)
            for port in pod.ports
            if (m := _PORT.match(port)) and m.group(2) == "tcp"
        }

    def _json(self, pod: FakePod) -> dict[str, Any]:
        self._catch_up(pod)
        return {
            "id": pod.id,
            "name": pod.name,
            "desiredStatus": pod.desired_status,
            "gpuCount": pod.gpu_count,
            "imageName": pod.image,
            "costPerHr": 0.69 * pod.gpu_count,
            "machineId": "m" + pod.id,
            "env": pod.env,
            "ports": pod.ports,
            "portMappings": pod.port_mappings or None,
            "publicIp": pod.public_ip,
            "containerDiskInGb": pod.body.get("containerDiskInGb", 50),
            "volumeInGb": pod.body.get("volumeInGb", 20),
            "machine": {},
        }


def create_refusal(body: Any) -> str | None:
    """Why RunPod would refuse this `POST /pods` body, or None."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if not isinstance(body.get("imageName"), str) or not body["imageName"]:
        return "imageName is required"
    types = body.get("gpuTypeIds")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        return "gpuTypeIds must be a non-empty list of GPU type ids"
    if body.get("cloudType", "SECURE") not in ("SECURE", "COMMUNITY"):
        return "cloudType must be SECURE or COMMUNITY"
    if not isinstance(body.get("gpuCount", 1), int) or body.get("gpuCount", 1) < 1:
        return "gpuCount must be a positive integer"
    ports = body.get("ports", [])
    if not isinstance(ports, list) or not all(isinstance(p, str) and _PORT.match(p) for p in ports):
        return "ports must be a list of [port]/[tcp|http] strings"
    env = body.get("env", {})
    if not isinstance(env, dict):
        return "env must be an object"
    for key, value in env.items():
        if not _ENV_NAME.match(key) or not isinstance(value, str):
            return f"env {key!r}: a variable name with a string value"
    for key in ("dockerEntrypoint", "dockerStartCmd"):
        value = body.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"{key} must be a list of strings"
    return None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_app(state: FakeRunPod) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def gatekeeper(request: Request, call_next: Any) -> Response:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        state.requests.append((request.method, request.url.path.removeprefix("/v1"), body))
        if state.rate_limit > 0:
            state.rate_limit -= 1
            return Response("Too Many Requests", status_code=429, headers={"Retry-After": "0"})
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return _error(401, "Unauthorized")
        response: Response = await call_next(request)
        return response

    def found(pod_id: str) -> FakePod | JSONResponse:
        pod = state.pods.get(pod_id)
        return pod if pod is not None else _error(404, "pod not found")

    @app.post("/v1/pods")
    async def create(request: Request) -> Response:
        body = await request.json()
        refusal = create_refusal(body)
        if refusal:
            return _error(400, refusal)
        if state.no_capacity:
            return _error(400, NO_CAPACITY)
        count = body.get("gpuCount", 1)
        gpu = next((g for g in state.gpu_types if g.id in body["gpuTypeIds"]), None)
        if gpu is None or not gpu.stock.get(count) or gpu.id in state.sold_out:
            return _error(400, NO_CAPACITY)
        entrypoint = body.get("dockerEntrypoint") or IMAGE_ENTRYPOINT
        command = body.get("dockerStartCmd") or IMAGE_CMD
        pod = FakePod(
            id=f"pod{next(state._ids):010d}",
            name=str(body.get("name", "")),
            gpu_type_id=gpu.id,
            gpu_count=count,
            image=body["imageName"],
            env=dict(body.get("env", {})),
            ports=list(body.get("ports", [])),
            argv=[*entrypoint, *command],
            body=body,
        )
        state.pods[pod.id] = pod
        state._boot(pod)
        return JSONResponse(state._json(pod), status_code=201)

    @app.get("/v1/pods")
    async def listing() -> list[dict[str, Any]]:
        return [state._json(pod) for pod in state.pods.values()]

    @app.get("/v1/pods/{pod_id}")
    async def get(pod_id: str) -> Response:
        pod = found(pod_id)
        return pod if isinstance(pod, Response) else JSONResponse(state._json(pod))

    @app.post("/v1/pods/{pod_id}/stop")
    async def stop(pod_id: str) -> Response:
        pod = found(pod_id)
        if isinstance(pod, Response):
            return pod
        pod.desired_status = "EXITED"
        pod.public_ip, pod.port_mappings = None, {}
        return JSONResponse(state._json(pod))

    @app.post("/v1/pods/{pod_id}/start")
    async def start(pod_id: str) -> Response:
        pod = found(pod_id)
        if isinstance(pod, Response):
            return pod
        if state.no_capacity:
            return _error(400, NO_CAPACITY)
        if state.resume_without_gpu:
            pod.gpu_count = 0
        state._boot(pod)
        return JSONResponse(state._json(pod))

    @app.delete("/v1/pods/{pod_id}")
    async def delete(pod_id: str) -> Response:
        if state.pods.pop(pod_id, None) is None:
            return _error(404, "pod not found")
        state.terminated.append(pod_id)
        return Response(status_code=204)

    @app.post("/graphql")
    async def graphql(request: Request) -> Response:
        query = str((await request.json()).get("query", ""))
        if state.fail_with and (message := state.fail_with.pop(0)) is not None:
            return JSONResponse({"errors": [{"message": message, "path": []}], "data": None})
        if "gpuTypes" not in query:
            return JSONResponse({"errors": [{"message": "Cannot query field on type Query"}]})
        return JSONResponse({"data": {"gpuTypes": _gpu_types(state, query)}})

    return app


def _gpu_types(state: FakeRunPod, query: str) -> list[dict[str, Any]]:
    aliases = re.findall(
        r"(?:(\w+)\s*:\s*)?lowestPrice\s*\(\s*input\s*:\s*\{\s*gpuCount\s*:\s*(\d+)", query
    )
    answer = []
    for gpu in state.gpu_types:
        entry: dict[str, Any] = {
            "id": gpu.id,
            "displayName": gpu.display_name,
            "memoryInGb": gpu.memory_in_gb,
            "maxGpuCount": gpu.max_gpu_count,
            "securePrice": gpu.price,
            "communityPrice": None if gpu.price is None else gpu.price * 0.8,
        }
        for alias, count in aliases:
            stock = gpu.stock.get(int(count))
            entry[alias or "lowestPrice"] = {
                "uninterruptablePrice": gpu.price if stock else None,
                "stockStatus": stock,
                "minimumBidPrice": None,
            }
        answer.append(entry)
    return answer
