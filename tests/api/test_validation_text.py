"""Validation errors said as sentences, from the errors pydantic really raises."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from sizzle.api.validation_text import summary


def _refuse_x(value: str) -> str:
    if "x" in value:
        raise ValueError("must not contain an x")
    return value


def _refuse_y(value: str) -> str:
    if "y" in value:
        raise ValueError("Strange letters inside")
    return value


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: int = Field(1, ge=1, le=600)
    tier: Literal["starter", "pro"] = "starter"
    tags: list[str] = Field(default_factory=list, max_length=2)
    note: Annotated[str, AfterValidator(_refuse_x), AfterValidator(_refuse_y)] = ""


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"minutes": 0}, 'The field "minutes" must be at least 1.'),
        ({"minutes": 601}, 'The field "minutes" can be at most 600.'),
        ({"minutes": "soon"}, 'The field "minutes" must be a whole number.'),
        ({"tier": "huge"}, "The field \"tier\" must be one of 'starter' or 'pro'."),
        ({"tags": ["a", "b", "c"]}, 'The field "tags" can have at most 2 items.'),
        ({"note": "x"}, 'The field "note" must not contain an x.'),
        ({"note": "y"}, 'The field "note" is not valid: strange letters inside.'),
        ({"colour": "red"}, 'The field "colour" is not something this request takes.'),
    ],
)
def test_each_error_is_one_sentence(given: dict[str, object], said: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Example.model_validate(given)
    assert summary(raised.value.errors()) == said
