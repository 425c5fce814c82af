"""SysToolKit's source data: one file per category plus templated families.

`retrieval/data/catalog/` holds
- `<category>.json`: `{"category": ..., "tools": [record | {"family": name}, ...]}`, each
  record a `Tool` without its category (the file gives it); a `{"family": name}` item
  expands the family in place;
- `families/<name>.json`: a compact description of a family of near-identical tools —
  `axes` (lists of variable sets; the family is their product), a `template` record whose
  strings use `{{var}}` (a string that is exactly `{{var}}` takes the variable's JSON value),
  and per-tool `instances` holding what differs by hand (examples, context hints);
- `order.json`: the order of the categories in the compiled catalog;
- `schema.json`: the JSON Schema of a category file, generated from `CategoryFile` (the one
  definition; a test pins the file to the model).

`build_records()` validates every file against the models and returns the flat record
list; `toolrec tools build-catalog` writes it to `data/systoolkit.json`, the file the
runtime loads. Imports `retrieval.catalog` (the record model) and `toolrec.errors`.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from retrieval.catalog import Action, Param
from toolrec.errors import RetrievalError

DATA_DIR = Path(__file__).parent / "data" / "catalog"
_VAR = re.compile(r"\{\{(\w+)\}\}")


class Record(BaseModel):
    """A tool as written in a category file (the category comes from the file)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    description: str
    examples: list[str]
    params: list[Param] = []
    action: Action
    context: list[str] = []
    confirm: bool = False


class FamilyRef(BaseModel):
    """Expand the named family (`families/<family>.json`) at this position."""

    model_config = ConfigDict(extra="forbid")

    family: str


class CategoryFile(BaseModel):
    """One category's tools, in catalog order."""

    model_config = ConfigDict(extra="forbid")

    category: str
    tools: list[Record | FamilyRef] = Field(min_length=1)


class Instance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    examples: list[str]
    context: list[str] = []


class Family(BaseModel):
    """A templated family of tools (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    family: str
    about: str
    axes: list[list[dict[str, Any]]] = Field(min_length=1)
    template: dict[str, Any]
    instances: dict[str, Instance]


def category_schema() -> dict[str, Any]:
    """The JSON Schema of a category file (written to `schema.json`)."""
    return CategoryFile.model_json_schema()


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RetrievalError(f"catalog data {path} cannot be read: {exc}") from exc


def _parse(model: type[BaseModel], data: Any, path: Path) -> Any:
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors()[:5])
        raise RetrievalError(f"catalog data {path} does not match its schema ({problems}); "
                             "fix the file and run `toolrec tools build-catalog`") from exc


def _fill(value: Any, variables: dict[str, Any]) -> Any:
    """The template value with `{{var}}` replaced (whole-string placeholders keep types)."""
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole:
            return variables[whole.group(1)]
        return _VAR.sub(lambda m: str(variables[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: _fill(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, variables) for v in value]
    return value


def expand_family(family: Family, path: Path) -> list[dict[str, Any]]:
    """The family's records: one per combination of its axes, with each instance's own
    examples and hints; every instance must be produced and every product have one."""
    records = []
    for combo in itertools.product(*family.axes):
        variables = {k: v for part in combo for k, v in part.items()}
        try:
            record = _fill(family.template, variables)
            record = _fill(record, variables)  # variables may hold {{var}} themselves
        except KeyError as exc:
            raise RetrievalError(f"family {path}: template uses {{{{{exc.args[0]}}}}}, which "
                                 "no axis defines") from None
        instance = family.instances.get(record["id"])
        if instance is None:
            raise RetrievalError(f"family {path}: no instance for {record['id']!r}; add its "
                                 "examples under 'instances'")
        records.append({**record, **instance.model_dump()})
    extra = set(family.instances) - {r["id"] for r in records}
    if extra:
        raise RetrievalError(f"family {path}: instances {sorted(extra)} match no combination")
    return records


def build_records(data_dir: Path = DATA_DIR) -> list[dict[str, Any]]:
    """Every tool record, categories in `order.json` order, families expanded in place."""
    order = _read(data_dir / "order.json")["categories"]
    files = {p.stem for p in data_dir.glob("*.json")} - {"order", "schema"}
    if set(order) != files:
        raise RetrievalError(f"catalog data {data_dir}: order.json lists {sorted(order)} but "
                             f"the category files are {sorted(files)}")
    records: list[dict[str, Any]] = []
    for category in order:
        path = data_dir / f"{category}.json"
        parsed: CategoryFile = _parse(CategoryFile, _read(path), path)
        if parsed.category != category:
            raise RetrievalError(f"{path} declares category {parsed.category!r}")
        for item in parsed.tools:
            if isinstance(item, FamilyRef):
                fpath = data_dir / "families" / f"{item.family}.json"
                family: Family = _parse(Family, _read(fpath), fpath)
                expanded = expand_family(family, fpath)
            else:
                expanded = [item.model_dump(mode="json", exclude_none=True)]
            records += [_with_category(r, category) for r in expanded]
    return records


def _with_category(record: dict[str, Any], category: str) -> dict[str, Any]:
    """The record in the catalog's field order, with its category."""
    out = {"id": record["id"], "name": record["name"], "category": category}
    out.update({k: v for k, v in record.items() if k not in out and k != "category"})
    return out
