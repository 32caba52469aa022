"""A fake Lambda Cloud API (v1 shapes), scriptable from tests; serve it with `serve()`.

Mounted under `/api/v1`. Bearer auth; `data` envelopes; `{"error": {code, message,
suggestion}}` errors; capacity per instance type; launches limited to one per 10 s of the
fake's clock (429 otherwise); instances boot (ip null) for `boot_polls` reads, then are active.

SSH keys as the spec has them: a launch names exactly one key registered at the account, or
fails; `POST /ssh-keys` takes a name (at most 64 characters, not taken) and a public key (one
that parses) or, without one, makes a pair and answers its private half once. With `machine`
set (a real sshd on loopback), an instance that turns active is that machine: its address is
127.0.0.1 and the public keys its launch named are put in the machine's authorized_keys, as
Lambda puts them on the VM's login user.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncssh
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from sizzle.clock import Clock
from tests.sshd import Sshd

LAUNCH_INTERVAL_SECONDS = 10.0


@dataclass
class FakeInstance:
    id: str
    name: str | None
    instance_type: str
    region: str
    ssh_key_names: list[str]
    status: str = "booting"
    polls: int = 0
    ip: str | None = None


@dataclass
class FakeLambda:
    """The fake's state; tests read and change it directly."""

    clock: Clock
    api_key: str = "lambda-test-key"
    boot_polls: int = 2
    types: dict[str, dict[str, Any]] = field(default_factory=dict)
    capacity: dict[str, list[str]] = field(default_factory=dict)
    instances: dict[str, FakeInstance] = field(default_factory=dict)
    ssh_keys: list[dict[str, Any]] = field(default_factory=list)
    last_launch: datetime | None = None
    launches: list[dict[str, Any]] = field(default_factory=list)
    rate_limited: int = 0
    terminate_calls: list[list[str]] = field(default_factory=list)
    launch_delay: float = 0.0  # real seconds a launch hangs before it is handled
    machine: Sshd | None = None  # the "VM" an instance that turns active is
    # registered just before the next POST /ssh-keys is handled: another replica's, first
    racing_key: dict[str, Any] | None = None

    def add_type(
        self, name: str, description: str, cents: int, regions: list[str] | None = None
    ) -> None:
        self.types[name] = {
            "name": name,
            "description": description,
            "price_cents_per_hour": cents,
            "specs": {"vcpus": 30, "memory_gib": 200, "storage_gib": 512},
        }
        self.capacity[name] = list(regions or [])

    def add_instance(
        self, name: str | None, *, status: str = "active", instance_type: str = "gpu_1x_a100"
    ) -> FakeInstance:
        instance = FakeInstance(
            id=uuid.uuid4().hex,
            name=name,
            instance_type=instance_type,
            region="us-east-1",
            ssh_key_names=["someone"],
            status=status,
            ip="10.0.0.99" if status == "active" else None,
        )
        self.instances[instance.id] = instance
        return instance

    def wire_instance(self, instance: FakeInstance) -> dict[str, Any]:
        return {
            "id": instance.id,
            "name": instance.name,
            "ip": instance.ip,
            "status": instance.status,
            "ssh_key_names": instance.ssh_key_names,
            "file_system_names": [],
            "region": {"name": instance.region, "description": "Somewhere"},
            "instance_type": self.types.get(instance.instance_type),
            "hostname": None,
            "jupyter_token": None,
            "jupyter_url": None,
        }

    def poll(self, instance: FakeInstance) -> None:
        if instance.status != "booting":
            return
        instance.polls += 1
        if instance.polls > self.boot_polls:
            instance.status = "active"
            instance.ip = f"10.0.0.{len(self.instances)}"
            if self.machine is not None:
                instance.ip = "127.0.0.1"
                for key in self.ssh_keys:
                    if key["name"] in instance.ssh_key_names:
                        self.machine.authorize(key["public_key"])


def error(status: int, code: str, message: str, suggestion: str | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "suggestion": suggestion}}
    return JSONResponse(body, status_code=status)


def _parses(public_key: Any) -> bool:
    if not isinstance(public_key, str) or len(public_key) > 4096:
        return False
    try:
        asyncssh.import_public_key(public_key)
    except (asyncssh.KeyImportError, ValueError):
        return False
    return True


class _Refused(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def build_app(state: FakeLambda) -> FastAPI:
    app = FastAPI()

    @app.exception_handler(_Refused)
    async def refused(_request: Request, exc: _Refused) -> JSONResponse:
        return exc.response

    def auth(request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            raise _Refused(
                error(
                    401,
                    "global/invalid-api-key",
                    "API key is invalid, expired, or deleted.",
                    "Create a new API key and try again.",
                )
            )

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(auth)])

    def data(value: Any) -> JSONResponse:
        return JSONResponse({"data": value})

    @api.get("/instance-types")
    async def instance_types() -> JSONResponse:
        return data(
            {
                name: {
                    "instance_type": info,
                    "regions_with_capacity_available": [
                        {"name": region, "description": region.title()}
                        for region in state.capacity.get(name, [])
                    ],
                }
                for name, info in state.types.items()
            }
        )

    @api.post("/instance-operations/launch")
    async def launch(request: Request) -> JSONResponse:
        if state.launch_delay:  # the request arrived whole; its answer is slow
            await request.body()
            await asyncio.sleep(state.launch_delay)
        now = state.clock.now()
        if state.last_launch is not None:
            wait = LAUNCH_INTERVAL_SECONDS - (now - state.last_launch).total_seconds()
            if wait > 0:
                state.rate_limited += 1
                response = error(429, "global/too-many-requests", "Too many launches.")
                response.headers["Retry-After"] = f"{wait:.3f}"
                return response
        state.last_launch = now
        body = await request.json()
        state.launches.append(body)
        type_name = body.get("instance_type_name")
        region = body.get("region_name")
        keys = body.get("ssh_key_names")
        if type_name not in state.types:
            return error(400, "global/invalid-parameters", f"Unknown instance type {type_name}")
        if not isinstance(keys, list) or len(keys) != 1:
            return error(400, "global/invalid-parameters", "Exactly one SSH key is required.")
        if keys[0] not in {key["name"] for key in state.ssh_keys}:
            return error(400, "global/invalid-parameters", f"Unknown SSH key {keys[0]}")
        if body.get("quantity", 1) != 1:
            return error(400, "global/invalid-parameters", "Quantity must be 1 here.")
        if region not in state.capacity.get(type_name, []):
            return error(
                400,
                "instance-operations/launch/insufficient-capacity",
                "Not enough capacity to fulfill launch request.",
                "Choose an instance type with more availability, or try again later.",
            )
        instance = FakeInstance(
            id=uuid.uuid4().hex,
            name=body.get("name"),
            instance_type=type_name,
            region=region,
            ssh_key_names=keys,
        )
        state.instances[instance.id] = instance
        return data({"instance_ids": [instance.id]})

    @api.get("/instances")
    async def instances() -> JSONResponse:
        for instance in state.instances.values():
            state.poll(instance)
        return data([state.wire_instance(i) for i in state.instances.values()])

    @api.get("/instances/{instance_id}")
    async def instance(instance_id: str) -> JSONResponse:
        found = state.instances.get(instance_id)
        if found is None:
            return error(404, "global/object-does-not-exist", "Specified instance does not exist.")
        state.poll(found)
        return data(state.wire_instance(found))

    @api.post("/instance-operations/terminate")
    async def terminate(request: Request) -> JSONResponse:
        ids = (await request.json()).get("instance_ids") or []
        state.terminate_calls.append(list(ids))
        found = [state.instances.get(i) for i in ids]
        if any(f is None or f.status == "terminated" for f in found):
            return error(404, "global/object-does-not-exist", "Specified instance does not exist.")
        for instance in found:
            assert instance is not None
            instance.status = "terminated"
            instance.ip = None
        return data({"terminated_instances": [state.wire_instance(f) for f in found if f]})

    @api.get("/ssh-keys")
    async def ssh_keys() -> JSONResponse:
        return data(state.ssh_keys)

    @api.post("/ssh-keys")
    async def add_ssh_key(request: Request) -> JSONResponse:
        body = await request.json()
        if state.racing_key is not None:
            state.ssh_keys.append(state.racing_key)
            state.racing_key = None
        name, public_key = body.get("name"), body.get("public_key")
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            return error(400, "global/invalid-parameters", "Invalid SSH key name.")
        if any(key["name"] == name for key in state.ssh_keys):
            return error(400, "global/invalid-parameters", f"An SSH key named {name} exists.")
        private_key = None
        if public_key is None:
            pair = asyncssh.generate_private_key("ssh-ed25519")
            public_key = pair.export_public_key().decode().strip()
            private_key = pair.export_private_key().decode()
        elif not _parses(public_key):
            return error(400, "global/invalid-parameters", "Invalid public key.")
        key = {"id": uuid.uuid4().hex, "name": name, "public_key": public_key}
        state.ssh_keys.append(key)
        return data({**key, "private_key": private_key})

    app.include_router(api)
    return app
