"""Every configuration field refuses a bad value and the error names the field.

Walks `toolrec.config.Settings` (every stage's section and their nested sections) and, for
each leaf field that does not itself take a mapping, passes a mapping as its value through
`load_settings`: the ConfigError must name the dotted path of the field. A new field is
covered without editing this file.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from toolrec.config import Settings, load_settings
from toolrec.errors import ConfigError

BAD = {"not": "a value"}  # invalid for any scalar, path, list, tuple or literal field


def _models(annotation: Any) -> list[type[BaseModel]]:
    args = typing.get_args(annotation) or (annotation,)
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def _takes_mapping(annotation: Any) -> bool:
    text = repr(annotation)
    return annotation is Any or "dict" in text or "Mapping" in text or "Any" in text


def _leaves(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, info in model.model_fields.items():
        nested = _models(info.annotation)
        if nested:
            yield from _leaves(nested[0], (*path, name))
        elif not _takes_mapping(info.annotation):
            yield (*path, name)


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for key in reversed(path):
        value = {key: value}
    return dict(value)


LEAVES = sorted(_leaves(Settings))


def test_every_section_has_checked_fields() -> None:
    sections = {leaf[0] for leaf in LEAVES}
    assert sections == set(Settings.model_fields), set(Settings.model_fields) - sections


@pytest.mark.parametrize("path", LEAVES, ids=[".".join(p) for p in LEAVES])
def test_a_bad_value_is_refused_with_the_field_named(path: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**_nest(path, BAD))
    assert ".".join(path) in str(caught.value)
