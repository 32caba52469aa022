"""The errors in the OpenAPI schema: every API operation documents the error answers it can
give, in Sizzle's one shape, so that a client (and schemathesis, in the tests) can rely on
the schema for the statuses it will see and for what their bodies hold.

The errors every operation shares are added here, read from the operation itself: a body
can be unreadable (400), a guarded route refuses a missing or bad sign-in (401) and a key
without its scope (403), a path that names a thing answers 404 when there is none, and
every API request counts against the rate limits (429). What only some operations do
(402, 409, 503, ...) each route declares with `error_responses(...)`."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from sizzle.api.schemas import ErrorOut

API_PREFIXES = ("/api/", "/v1/")
_SCHEMAS = "#/components/schemas/"

_DESCRIPTIONS = {
    400: "The request cannot be read (e.g. its body is not JSON).",
    401: "Not signed in, or the token or key is invalid or expired.",
    402: "Not enough credit or free minutes.",
    403: "Not allowed: an API key without the scope, or not an operator.",
    404: "No such thing, or not yours.",
    409: "Not possible in the current state.",
    411: "The request must say its size (a Content-Length header).",
    413: "The request is too large.",
    415: "A kind of file Sizzle cannot read.",
    422: "The request is not valid; `details` names each field and its problem.",
    429: "Too many requests; `Retry-After` says when to try again.",
    502: "The session's own server (its model) failed or could not be reached.",
    503: "Not available now (no GPU free, a provider down, or payments not set up here).",
    504: "The session's own server (its model) did not answer in time.",
}


def error_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object of one error status."""
    description = _DESCRIPTIONS.get(status) or HTTPStatus(status).phrase
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"{_SCHEMAS}ErrorOut"}}},
    }


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the errors only it gives, besides the shared ones."""
    return {
        status: {"model": ErrorOut, "description": _DESCRIPTIONS[status]} for status in statuses
    }


def shared_errors(path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses any operation like this one can answer."""
    statuses = {429}  # every API request counts against its address's limit
    if "requestBody" in operation:
        statuses.add(400)
    if operation.get("security"):
        statuses |= {401, 403}
    if "{" in path:
        statuses.add(404)
    return statuses


def document_errors(schema: dict[str, Any]) -> None:
    """Add the shared error answers to every API operation of an OpenAPI schema, and answer
    422 in Sizzle's shape rather than FastAPI's `{"detail": [...]}`."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorOut.model_json_schema(ref_template=_SCHEMAS + "{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorOut"] = error_schema
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:  # the app answers every 422 in the one shape
                responses["422"] = error_response(422)
            if path.startswith(API_PREFIXES):
                for status in sorted(shared_errors(path, operation)):
                    responses.setdefault(str(status), error_response(status))
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def install(app: FastAPI) -> None:
    """Make `app.openapi()` build the schema with the errors documented (once, then cached)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
