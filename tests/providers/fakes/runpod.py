"""A fake RunPod GraphQL API: scriptable in-memory state behind `POST /graphql`.

No GraphQL parser: it dispatches on the root field named in the query text and reads the
inline input values (`podId: "..."`, `gpuCount: 2`) with regular expressions. Like RunPod,
it answers GraphQL errors with HTTP 200 and an `errors` list, and a bad key with HTTP 401.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

NO_CAPACITY = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)


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
    ports: str
    desired_status: str = "RUNNING"
    polls_until_up: int = 0


@dataclass
class FakeRunPod:
    api_key: str = "rp-test-key"
    gpu_types: list[FakeGpuType] = field(default_factory=list)
    pods: dict[str, FakePod] = field(default_factory=dict)
    runtime_null_polls: int = 2  # pod polls answered with runtime null after (re)start
    no_capacity: bool = False  # create and resume fail with RunPod's capacity message
    # the next answers: errors[] with these messages (None: answer that request normally)
    fail_with: list[str | None] = field(default_factory=list)
    rate_limit: int = 0  # answer this many requests with 429 first
    calls: list[str] = field(default_factory=list)  # root fields, in order
    terminated: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_pod(self, name: str, *, status: str = "RUNNING", gpu_count: int = 1) -> FakePod:
        pod = FakePod(
            id=f"pod{next(self._ids):04d}",
            name=name,
            gpu_type_id="NVIDIA GeForce RTX 4090",
            gpu_count=gpu_count,
            image="other/image",
            env={},
            ports="",
            desired_status=status,
        )
        self.pods[pod.id] = pod
        return pod


_STRING = r'("(?:[^"\\]|\\.)*")'  # a JSON-escaped string literal


def _string(query: str, key: str) -> str | None:
    match = re.search(rf"\b{key}\s*:\s*{_STRING}", query)
    return str(json.loads(match.group(1))) if match else None


def _int(query: str, key: str) -> int | None:
    match = re.search(rf"\b{key}\s*:\s*(\d+)", query)
    return int(match.group(1)) if match else None


def _enum(query: str, key: str) -> str | None:
    match = re.search(rf"\b{key}\s*:\s*([A-Z_]+)\b", query)
    return match.group(1) if match else None


def _env(query: str) -> dict[str, str]:
    pairs = re.findall(rf"key\s*:\s*{_STRING}\s*,\s*value\s*:\s*{_STRING}", query)
    return {json.loads(key): json.loads(value) for key, value in pairs}


def _asked(query: str, values: dict[str, Any]) -> dict[str, Any]:
    """Only the fields the query names, as a real GraphQL server would answer."""
    return {key: value for key, value in values.items() if re.search(rf"\b{key}\b", query)}


def _errors(message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "path": []}], "data": None})


def _data(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"data": data})


def build_app(state: FakeRunPod) -> FastAPI:
    app = FastAPI()

    def pod_json(pod: FakePod, query: str) -> dict[str, Any]:
        runtime = None
        if pod.desired_status == "RUNNING":
            if pod.polls_until_up > 0:
                pod.polls_until_up -= 1
            else:
                runtime = {
                    "uptimeInSeconds": 12,
                    "ports": [
                        {
                            "ip": "100.65.0.2",
                            "isIpPublic": False,
                            "privatePort": 11434,
                            "publicPort": 60123,
                            "type": "http",
                        }
                    ],
                    "gpus": [{"id": "GPU-1", "gpuUtilPercent": 0, "memoryUtilPercent": 0}],
                }
        values = {
            "id": pod.id,
            "name": pod.name,
            "desiredStatus": pod.desired_status,
            "gpuCount": pod.gpu_count,
            "imageName": pod.image,
            "costPerHr": 0.69,
            "runtime": runtime,
        }
        return _asked(query, values)

    def gpu_types(query: str) -> dict[str, Any]:
        aliases = re.findall(
            r"(?:(\w+)\s*:\s*)?lowestPrice\s*\(\s*input\s*:\s*\{\s*gpuCount\s*:\s*(\d+)", query
        )
        answer = []
        for gpu in state.gpu_types:
            entry = _asked(
                query,
                {
                    "id": gpu.id,
                    "displayName": gpu.display_name,
                    "memoryInGb": gpu.memory_in_gb,
                    "maxGpuCount": gpu.max_gpu_count,
                    "securePrice": gpu.price,
                    "communityPrice": None if gpu.price is None else gpu.price * 0.8,
                },
            )
            for alias, count in aliases:
                stock = gpu.stock.get(int(count))
                entry[alias or "lowestPrice"] = {
                    "uninterruptablePrice": gpu.price if stock else None,
                    "stockStatus": stock,
                    "minimumBidPrice": None,
                }
            answer.append(entry)
        return {"gpuTypes": answer}

    @app.post("/graphql")
    async def graphql(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        if state.rate_limit > 0:
            state.rate_limit -= 1
            return Response("Too Many Requests", status_code=429, headers={"Retry-After": "0"})
        body = await request.json()
        query = str(body.get("query", ""))
        state.queries.append(query)
        if state.fail_with and (message := state.fail_with.pop(0)) is not None:
            state.calls.append("error")
            return _errors(message)

        # mutations first: "podTerminate(" etc. never contain "pod(", but be explicit
        if "podFindAndDeployOnDemand" in query:
            state.calls.append("podFindAndDeployOnDemand")
            if state.no_capacity:
                return _errors(NO_CAPACITY)
            gpu_type_id = _string(query, "gpuTypeId") or ""
            count = _int(query, "gpuCount") or 1
            if _enum(query, "cloudType") not in ("ALL", "SECURE", "COMMUNITY"):
                return _errors("cloudType must be ALL, SECURE or COMMUNITY")
            gpu = next((g for g in state.gpu_types if g.id == gpu_type_id), None)
            if gpu is None or not gpu.stock.get(count):
                return _errors(NO_CAPACITY)
            pod = state.add_pod(_string(query, "name") or "", gpu_count=count)
            pod.gpu_type_id = gpu_type_id
            pod.image = _string(query, "imageName") or ""
            pod.ports = _string(query, "ports") or ""
            pod.env = _env(query)
            pod.polls_until_up = state.runtime_null_polls
            return _data({"podFindAndDeployOnDemand": {"id": pod.id, "imageName": pod.image}})
        if "podStop" in query:
            state.calls.append("podStop")
            stopped = state.pods.get(_string(query, "podId") or "")
            if stopped is None:
                return _errors("pod not found")
            stopped.desired_status = "EXITED"
            return _data({"podStop": {"id": stopped.id, "desiredStatus": "EXITED"}})
        if "podResume" in query:
            state.calls.append("podResume")
            resumed = state.pods.get(_string(query, "podId") or "")
            if resumed is None:
                return _errors("pod not found")
            if state.no_capacity:
                return _errors(NO_CAPACITY)
            if _int(query, "gpuCount") != resumed.gpu_count:
                return _errors("gpuCount does not match the pod")
            resumed.desired_status = "RUNNING"
            resumed.polls_until_up = state.runtime_null_polls
            return _data({"podResume": {"id": resumed.id, "desiredStatus": "RUNNING"}})
        if "podTerminate" in query:
            state.calls.append("podTerminate")
            pod_id = _string(query, "podId") or ""
            if state.pods.pop(pod_id, None) is None:
                return _errors("pod not found to terminate")
            state.terminated.append(pod_id)
            return _data({"podTerminate": None})
        if "gpuTypes" in query:
            state.calls.append("gpuTypes")
            return _data(gpu_types(query))
        if re.search(r"\bpod\s*\(", query):
            state.calls.append("pod")
            found = state.pods.get(_string(query, "podId") or "")
            return _data({"pod": pod_json(found, query) if found else None})
        if "myself" in query:
            state.calls.append("myself")
            if "pods" not in query:
                return _data({"myself": {"id": "user-1"}})
            pods = [pod_json(pod, query) for pod in state.pods.values()]
            return _data({"myself": {"id": "user-1", "pods": pods}})
        return _errors("Cannot query field on type Query")

    return app
