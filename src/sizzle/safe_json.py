"""JSON from clients, parsed only when it nests no deeper than a limit.

Python's parser recurses per level: a body of 100,000 `[` is a RecursionError (a 500), and
one just under the interpreter's limit parses but breaks whatever walks it next (re-encoding
it for a model server). Nesting is measured before parsing, at C speed: strings are cut out
by a regular expression, everything but brackets is deleted, and innermost pairs are removed
one level per pass, so a deep body is refused after `max_depth` cheap passes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sizzle.errors import ValidationFailed

MAX_DEPTH = 64  # far past any chat request or Stripe event; far below the parser's limit
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth_over(raw: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests deeper than `max_depth` (unbalanced text may say so too)."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False  # fewer openers than levels allowed: cannot be deeper
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _level in range(max_depth):
        inner = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if inner == brackets:
            return False  # unbalanced: not JSON, which the parser will say
        if not inner:
            return False
        brackets = inner
    return bool(brackets)


def parse_json(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed body; ValidationFailed (422) when it is not JSON or nests too deep."""
    if nesting_depth_over(raw, max_depth):
        raise ValidationFailed(
            f"the body nests deeper than {max_depth} levels", code="too_deeply_nested"
        )
    try:
        return json.loads(raw)
    except RecursionError:  # unbalanced text the measure could not see through
        raise ValidationFailed(
            f"the body nests deeper than {max_depth} levels", code="too_deeply_nested"
        ) from None
    except ValueError as exc:
        raise ValidationFailed(f"the body is not JSON: {exc}") from None
