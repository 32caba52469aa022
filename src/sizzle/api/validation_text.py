"""Pydantic's validation errors said as sentences a person can act on.

"name: String should have at most 100 characters" becomes 'The field "name" can be at most
100 characters.' The machine-readable details (field, type) stay beside it in the error body."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Where FastAPI says a value came from: the first part of an error's location.
_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})
_VALUE_ERROR_PREFIX = "Value error, "
# Our validators' messages that already read on from 'The field "<name>"', e.g. "must be ..."
_VERBS = frozenset({"must", "is", "can", "cannot", "needs", "should"})


def field_name(location: Sequence[Any]) -> str:
    """The field an error is about, as a client names it ("limits.max_minutes"), or "" for
    the whole body."""
    parts = list(location)
    if parts and parts[0] in _SOURCES:
        parts = parts[1:]
    return ".".join(str(part) for part in parts)


def sentence(error: Mapping[str, Any]) -> str:
    """One validation error as a sentence."""
    field = field_name(error.get("loc", ()))
    kind = str(error.get("type", ""))
    context: Mapping[str, Any] = error.get("ctx") or {}
    message = str(error.get("msg", "is not valid"))
    if not field or kind == "json_invalid":  # the latter's location is a position in the body
        return _about_the_body(kind, message)
    return f'The field "{field}" {_predicate(kind, context, message)}.'


def summary(errors: Sequence[Mapping[str, Any]]) -> str:
    """Every error, one sentence each (the same sentence once)."""
    return " ".join(dict.fromkeys(sentence(error) for error in errors)) or "The request is invalid."


def _about_the_body(kind: str, message: str) -> str:
    if kind == "json_invalid":
        return "The request body is not valid JSON."
    if kind == "missing":
        return "The request needs a JSON body."
    if kind in ("model_attributes_type", "dict_type", "model_type"):
        return "The request body must be a JSON object."
    return f"The request body is not valid: {_plain(message)}."


def _predicate(kind: str, context: Mapping[str, Any], message: str) -> str:  # noqa: C901, PLR0911
    """What is wrong with a field, after 'The field "<name>"'."""
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not something this request takes"
    if kind == "string_too_short":
        least = context.get("min_length", 1)
        return "cannot be empty" if least == 1 else f"must be at least {least} characters"
    if kind == "string_too_long":
        return f"can be at most {context.get('max_length')} characters"
    if kind == "too_short":
        least = context.get("min_length")
        return f"needs at least {least} item" + ("" if least == 1 else "s")
    if kind == "too_long":
        return f"can have at most {context.get('max_length')} items"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type", "decimal_parsing", "decimal_type"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind in ("string_type", "string_unicode"):
        return "must be text"
    if kind == "greater_than_equal":
        return f"must be at least {context.get('ge')}"
    if kind == "greater_than":
        return f"must be more than {context.get('gt')}"
    if kind == "less_than_equal":
        return f"can be at most {context.get('le')}"
    if kind == "less_than":
        return f"must be less than {context.get('lt')}"
    if kind in ("literal_error", "enum"):
        return f"must be one of {context.get('expected')}"
    if kind == "string_pattern_mismatch":
        return "is not in the expected form"
    if kind in ("list_type", "tuple_type", "set_type"):
        return "must be a list"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be an object"
    if kind == "value_error" and message.startswith(_VALUE_ERROR_PREFIX):
        ours = _plain(message[len(_VALUE_ERROR_PREFIX) :])  # a validator of ours said it
        return ours if ours.split(" ", 1)[0] in _VERBS else f"is not valid: {ours}"
    return f"is not valid: {_plain(message)}"


def _plain(message: str) -> str:
    """Pydantic's or our message, as the end of a sentence."""
    message = message.strip().rstrip(".")
    if message[1:2].isupper():  # an initialism, "JSON ..."
        return message
    return message[:1].lower() + message[1:]
