"""Embeddings from a session's model server (`POST /v1/embeddings`, OpenAI-compatible).

The request is checked here; the node is asked for plain float vectors at their full length,
and the answer is shaped to what the client asked for (fewer dimensions, base64). So the
answer is the same whichever Ollama version the node runs: older ones ignore `dimensions` and
`encoding_format`, newer ones shorten a vector the way done here (cut, then scaled back to
length 1). A request costs what chat costs: one counted request row, with the prompt tokens
the node reported, and a use of the session for the idle limit.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from sizzle.errors import BadGateway, ValidationFailed
from sizzle.services.chat_proxy import ChatProxy
from sizzle.services.model_library import model_name
from sizzle.services.workspace import ChatTarget

EMBEDDINGS_PATH = "/v1/embeddings"
MAX_INPUTS = 2048  # OpenAI's limit on texts in one request
MAX_DIMENSIONS = 65_536


class EmbeddingsIn(BaseModel):
    """What Sizzle takes of an embeddings request; other fields (such as `user`) are ignored."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr | None = Field(None, max_length=200)
    input: StrictStr | list[StrictStr] = Field(
        description=f"A text, or a list of 1 to {MAX_INPUTS} texts."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, ge=1, le=MAX_DIMENSIONS)

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if (
            isinstance(value, list)
            and 1 <= len(value) <= MAX_INPUTS
            and all(isinstance(item, str) for item in value)
        ):
            return value
        raise ValueError(
            f"must be a text or a list of 1 to {MAX_INPUTS} texts (token arrays are not taken)"
        )


def node_request(request: EmbeddingsIn, target: ChatTarget) -> dict[str, Any]:
    """The body for the node: the session's own model name, the texts, and `dimensions` (a
    node that knows it does the shortening itself; one that does not is shortened here)."""
    forwarded: dict[str, Any] = {"model": target.model, "input": request.input}
    if request.dimensions is not None:
        forwarded["dimensions"] = request.dimensions
    return forwarded


async def embed(proxy: ChatProxy, target: ChatTarget, request: EmbeddingsIn) -> dict[str, Any]:
    """The embeddings of the request's texts, counted on the session like a chat."""
    answer = await proxy.post_json(target, EMBEDDINGS_PATH, node_request(request, target))
    return shaped(answer, request, model=target.model)


def shaped(answer: dict[str, Any], request: EmbeddingsIn, *, model: str) -> dict[str, Any]:
    """The node's answer as the client asked for it; 502 when it is not an embeddings list."""
    data = answer.get("data")
    if not isinstance(data, list) or not all(_is_vector_entry(entry) for entry in data):
        raise BadGateway("the model server's answer is not a list of embeddings")
    entries = []
    for position, entry in enumerate(data):
        vector = [float(x) for x in entry["embedding"]]
        if request.dimensions is not None:
            vector = _shortened(vector, request.dimensions, model=model)
        entries.append(
            {
                "object": "embedding",
                "index": entry.get("index", position),
                "embedding": _encoded(vector) if request.encoding_format == "base64" else vector,
            }
        )
    return {**answer, "object": "list", "data": entries}


def _is_vector_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    vector = entry.get("embedding")
    return isinstance(vector, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in vector
    )


def _shortened(vector: list[float], dimensions: int, *, model: str) -> list[float]:
    """The first `dimensions` numbers, scaled back to length 1; 422 when the model's vectors
    are shorter than that."""
    if len(vector) < dimensions:
        raise ValidationFailed(
            f"{model_name(model)} makes vectors of {len(vector)} numbers, so dimensions can be "
            f"at most {len(vector)}.",
            code="dimensions_too_large",
        )
    if len(vector) == dimensions:
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm > 0 else head


def _encoded(vector: list[float]) -> str:
    """As OpenAI sends `encoding_format: base64`: little-endian float32s, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
