"""Ollama wire models, and the node entries of `SIZZLE_OLLAMA_NODES`."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncssh
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from sizzle.domain.gpus import normalize_gpu_name
from sizzle.domain.money import usd_to_micros
from sizzle.errors import BadRequest, ProviderUnavailable
from sizzle.workload.endpoint import SshEndpoint

_TOKEN = re.compile(r"[\x21-\x7e]{8,512}")  # fit for an HTTP header as it is
# user@host or user@host:port; the host a name or an IPv4 address, or [IPv6] with a port
_SSH_ADDRESS = re.compile(
    r"^(?P<user>[a-z_][a-z0-9_.-]{0,31})@(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>\d{1,5}))?$"
)
OLLAMA_PORT = 11434
_NODE_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class OllamaNode(BaseModel):
    """One operator-owned node: where its Ollama listens, what GPUs it has, what it costs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    url: str | None = Field(
        None,
        description="Base URL of the node's Ollama, e.g. http://10.0.0.5:11434. With `ssh`, "
        "where it listens on the node itself (default http://127.0.0.1:11434).",
    )
    gpu: str = Field(min_length=1, description="The GPU's name, e.g. 'RTX 4090'.")
    gpu_count: int = Field(ge=1, le=64)
    vram_gb: int = Field(ge=1, le=4096, description="Memory of one GPU, in GB.")
    price_per_hour_usd: Decimal = Field(ge=0, description="The operator's own cost per hour.")
    agent_url: str | None = Field(
        None, description="Base URL of `sizzle node-agent` on the node, for GPU metrics."
    )
    token: SecretStr | None = Field(
        None,
        description="The bearer token that the node's reverse proxy requires (Ollama and the "
        "node agent have no authentication of their own: put both behind it); sent as "
        "`Authorization: Bearer` on every request to the node and its agent.",
    )

    ssh: str | None = Field(
        None,
        description="Reach the node over SSH instead of the network: `user@host` or "
        "`user@host:port`. Its Ollama (and node agent) then listen on the node's 127.0.0.1 "
        "only, and Sizzle tunnels to them with the key in SIZZLE_OLLAMA_SSH_KEY_FILE.",
    )
    ssh_host_key: str | None = Field(
        None,
        description="The node's SSH host key (`ssh-ed25519 AAAA...`, as in its "
        "/etc/ssh/ssh_host_ed25519_key.pub): required with `ssh`; any other key is refused.",
    )

    @field_validator("ssh")
    @classmethod
    def _ssh_address(cls, value: str | None) -> str | None:
        if value is not None:
            found = _SSH_ADDRESS.fullmatch(value)
            if found is None:
                raise ValueError("must be user@host or user@host:port")
            if found["port"] is not None and not 1 <= int(found["port"]) <= 65535:
                raise ValueError("the port must be between 1 and 65535")
        return value

    @field_validator("ssh_host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            key = asyncssh.import_public_key(value.strip())
        except (asyncssh.KeyImportError, ValueError):
            raise ValueError("must be one SSH public key line, e.g. ssh-ed25519 AAAA...") from None
        algorithm, blob, *_ = key.export_public_key("openssh").decode().split()
        return f"{algorithm} {blob}"  # its comment dropped

    @model_validator(mode="after")
    def _reached_somehow(self) -> OllamaNode:
        if self.ssh is None:
            if self.url is None:
                raise ValueError("give the node's `url`, or `ssh` to reach it over SSH")
            if self.ssh_host_key is not None:
                raise ValueError("`ssh_host_key` needs `ssh`")
            return self
        if self.ssh_host_key is None:
            raise ValueError("a node reached over `ssh` needs its `ssh_host_key`")
        for field, value in (("url", self.url), ("agent_url", self.agent_url)):
            if value is not None and urlsplit(value).hostname not in _NODE_LOOPBACK:
                raise ValueError(
                    f"with `ssh`, `{field}` is where it listens on the node itself: "
                    "http://127.0.0.1:<port>"
                )
        return self

    @property
    def ssh_endpoint(self) -> SshEndpoint | None:
        """Where the node's SSH server answers, for a node reached over SSH."""
        found = _SSH_ADDRESS.fullmatch(self.ssh or "")
        if found is None:
            return None
        host = found["host"].removeprefix("[").removesuffix("]")
        return SshEndpoint(host=host, port=int(found["port"] or 22), username=found["user"])

    @property
    def ollama_port(self) -> int:
        """The port of the node's Ollama on the node, for a node reached over SSH."""
        if self.url is None:
            return OLLAMA_PORT
        return urlsplit(self.url).port or OLLAMA_PORT

    @property
    def agent_port(self) -> int | None:
        """The port of the node agent on the node, if it has one."""
        if self.agent_url is None:
            return None
        split = urlsplit(self.agent_url)
        return split.port or (443 if split.scheme == "https" else 80)

    @field_validator("token")
    @classmethod
    def _header_safe(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("must be 8 to 512 visible ASCII characters, without spaces")
        return value

    def auth_headers(self) -> dict[str, str]:
        """The node's `Authorization` header, where it has a token."""
        if self.token is None:
            return {}
        return {"Authorization": f"Bearer {self.token.get_secret_value()}"}

    @field_validator("url", "agent_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, value: str) -> str:
        if normalize_gpu_name(value) is None:
            raise ValueError(f"{value!r} is not a GPU Sizzle rents")
        return value

    @field_validator("price_per_hour_usd")
    @classmethod
    def _whole_micros(cls, value: Decimal) -> Decimal:
        if not value.is_finite():
            raise ValueError("must be a finite amount of dollars")
        usd_to_micros(value)  # refuses sub-micro-dollar digits
        return value

    @property
    def canonical_gpu(self) -> str:
        canonical = normalize_gpu_name(self.gpu, vram_gb=self.vram_gb)
        assert canonical is not None  # noqa: S101 - checked by the validator
        return canonical

    @property
    def upstream_micros_per_hour(self) -> int:
        return usd_to_micros(self.price_per_hour_usd)


_NODES = TypeAdapter(list[OllamaNode])


def parse_nodes(raw: str) -> list[OllamaNode]:
    """The nodes of `SIZZLE_OLLAMA_NODES`, or BadRequest saying what is wrong with it."""
    try:
        nodes = _NODES.validate_json(raw or "[]")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
            for error in exc.errors()
        )
        raise BadRequest(f"SIZZLE_OLLAMA_NODES is not valid: {problems}") from exc
    names = [node.name for node in nodes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise BadRequest(f"SIZZLE_OLLAMA_NODES names a node twice: {', '.join(duplicates)}")
    return nodes


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


_WireT = TypeVar("_WireT", bound=_Wire)


class VersionResponse(_Wire):
    version: str


class LocalModel(_Wire):
    name: str
    model: str | None = None
    size: int | None = None
    digest: str | None = None


class TagsResponse(_Wire):
    models: list[LocalModel] = Field(default_factory=list)


class LoadedModel(_Wire):
    name: str
    model: str | None = None
    size: int | None = None
    size_vram: int | None = None
    expires_at: str | None = None
    context_length: int | None = None


class PsResponse(_Wire):
    models: list[LoadedModel] = Field(default_factory=list)


class PullProgress(_Wire):
    """One NDJSON line of `POST /api/pull`; `total`/`completed` only on layer lines."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


def parse(model: type[_WireT], body: Any, *, what: str) -> _WireT:
    """A wire model from a JSON body, or ProviderUnavailable naming what was malformed."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ProviderUnavailable(f"ollama: malformed {what} answer") from exc
