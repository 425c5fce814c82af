"""Arrow columns derived from the pydantic contracts, so a table schema is never written twice.

`arrow_fields(Sample)` is the `samples` table's contract part, column for column: the field
names (the `schema` alias included) in declaration order, `str` → string, `int` → int64,
`float` → float64, `bool` → bool, and nullable exactly when the annotation admits None. The
lake adds its own columns (partition date, Kafka origin, batch id) after these
(`lakehouse.tables.SAMPLES_SCHEMA`). A type outside that list is refused with the field
named, so a new contract field needs a deliberate mapping here.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import BaseModel

from toolrec.errors import ConfigError

__all__ = ["arrow_fields", "arrow_type"]

_SCALARS: dict[type, pa.DataType] = {
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
    str: pa.string(),
}


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The annotation's one concrete type and whether None is allowed."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise ConfigError(f"union {annotation!r} has no single Arrow type; use one type")
        inner, _ = _unwrap(args[0])
        return inner, True
    if origin is Literal:
        values = typing.get_args(annotation)
        kinds = {type(v) for v in values}
        if len(kinds) != 1:
            raise ConfigError(f"literal {annotation!r} mixes types; use values of one type")
        return kinds.pop(), False
    return annotation, False


def arrow_type(name: str, annotation: Any) -> tuple[pa.DataType, bool]:
    """The Arrow type and nullability of one contract field (refuses unmapped types)."""
    inner, nullable = _unwrap(annotation)
    if inner not in _SCALARS:
        raise ConfigError(
            f"contract field {name!r} has type {inner!r}, which has no Arrow column type; "
            f"add it to contracts.arrow._SCALARS (mapped: {sorted(t.__name__ for t in _SCALARS)})"
        )
    return _SCALARS[inner], nullable


def arrow_fields(model: type[BaseModel]) -> list[pa.Field]:
    """One Arrow field per model field, in declaration order, named by alias when set."""
    hints = typing.get_type_hints(model, include_extras=True)
    fields = []
    for name, info in model.model_fields.items():
        type_, nullable = arrow_type(name, hints[name])
        fields.append(pa.field(info.alias or name, type_, nullable=nullable))
    return fields
