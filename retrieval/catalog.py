"""SysToolKit: the typed catalog of executable system tools, loaded from package data.

The shipped artifact is `retrieval/data/systoolkit.json`, compiled by `toolrec tools
build-catalog` from the per-category data files in `retrieval/data/catalog`
(`retrieval.catalog_data`). Records are parsed
into frozen pydantic models, so a malformed file fails loudly at load time; the deeper
checks (near-duplicates, parameter sanity) live in `retrieval.validate`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from toolrec.errors import RetrievalError

CATALOG_RESOURCE = "systoolkit.json"

ParamType = Literal[
    "string", "integer", "number", "boolean", "enum", "date", "time", "datetime",
    "duration", "phone", "contact", "url", "app",
]
ActionKind = Literal[
    "settings", "panel", "intent", "deeplink", "launch", "api", "setting", "media_key",
    "global_action", "matter", "capability",
]


class Param(BaseModel):
    """One argument of a tool: its type, whether it is required, allowed values or range."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str = Field(description="identifier used as `{name}` in the action")
    type: ParamType
    required: bool = False
    description: str = ""
    values: tuple[str, ...] | None = Field(default=None, description="allowed values (enum)")
    min: int | float | None = None
    max: int | float | None = None
    unit: str | None = None


class Action(BaseModel):
    """How the tool executes on Android.

    kind: `settings` (a `Settings.ACTION_*` screen), `panel` (`Settings.Panel`), `intent`
    (AlarmClock, MediaStore, CalendarContract, telephony ...), `deeplink` (ACTION_VIEW of a
    URI), `launch` (an app's launcher intent), `api` (a platform service call available to
    the privileged assistant), `setting` (a `Settings.System/Secure/Global` write),
    `media_key`, `global_action` (AccessibilityService), `matter` (a smart-home cluster
    command), `capability` (a provider-neutral capability from `data/actions.json`,
    resolved at run time to whichever installed app provides it: any ride-hailing app,
    the user's banking app). `{param}` placeholders are filled from params; `$NAME` tokens
    are runtime values the executor resolves (e.g. `$LAST_SENDER`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ActionKind
    target: str
    constant: str | None = None
    uri: str | None = None
    mime: str | None = None
    package: str | None = None
    extras: dict[str, Any] = Field(default_factory=dict)
    args: dict[str, Any] = Field(default_factory=dict)


class Tool(BaseModel):
    """One SysToolKit record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    category: str
    description: str
    examples: tuple[str, ...]
    params: tuple[Param, ...] = ()
    action: Action
    context: tuple[str, ...] = Field(
        default=(), description="hints: when the tool is especially relevant; '!' = less so"
    )
    confirm: bool = False

    def texts(self) -> list[str]:
        """The phrasings embedded for retrieval: name, description, then each example."""
        return [self.name, self.description, *self.examples]


class Catalog:
    """The loaded tool list with O(1) lookup by id and a content hash."""

    def __init__(self, tools: list[Tool], *, source: str) -> None:
        self.tools = tools
        self.source = source
        self._by_id = {t.id: t for t in tools}
        self.hash = catalog_hash(tools)

    def __len__(self) -> int:
        return len(self.tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools)

    def __contains__(self, tool_id: object) -> bool:
        return tool_id in self._by_id

    def get(self, tool_id: str) -> Tool:
        """The tool with this id; RetrievalError naming close ids when it does not exist."""
        try:
            return self._by_id[tool_id]
        except KeyError:
            prefix = tool_id.split(".", 1)[0]
            near = [t for t in self._by_id if t.startswith(prefix + ".")][:5]
            hint = f"; ids in '{prefix}': {', '.join(near)}" if near else ""
            raise RetrievalError(
                f"unknown tool id {tool_id!r}{hint}; list ids with `toolrec tools search`"
            ) from None

    @property
    def categories(self) -> list[str]:
        return sorted({t.category for t in self.tools})


def catalog_hash(tools: list[Tool]) -> str:
    """A stable digest of the catalog's content; the index is rebuilt when it changes."""
    payload = json.dumps([t.model_dump(mode="json") for t in tools], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def parse_records(records: list[dict[str, Any]], *, source: str) -> Catalog:
    """Parse raw records; RetrievalError names the record and field that is malformed."""
    tools = []
    for i, record in enumerate(records):
        try:
            tools.append(Tool.model_validate(record))
        except PydanticValidationError as exc:
            where = record.get("id", f"#{i}") if isinstance(record, dict) else f"#{i}"
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise RetrievalError(
                f"catalog {source}: record {where} is malformed ({problems}); fix the record "
                "in retrieval/data/catalog and run `toolrec tools build-catalog`"
            ) from exc
    return Catalog(tools, source=source)


def _read_json(path: Path | None) -> tuple[list[dict[str, Any]], str]:
    if path is None:
        ref = resources.files("retrieval.data").joinpath(CATALOG_RESOURCE)
        text, source = ref.read_text(encoding="utf-8"), f"package:{CATALOG_RESOURCE}"
    else:
        if not path.is_file():
            raise RetrievalError(f"catalog file {path} does not exist; pass an existing JSON file")
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RetrievalError(
            f"catalog {source} is not valid JSON: {exc}; fix the file, or regenerate the "
            "bundled catalog with `toolrec tools build-catalog`"
        ) from exc
    records = data.get("tools") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise RetrievalError(f"catalog {source} must hold a list of tools under 'tools'")
    return records, source


def load_catalog(path: Path | None = None) -> Catalog:
    """Load SysToolKit (the packaged file by default). Cached per path: tools are frozen."""
    return _load_cached(str(path) if path is not None else None)


@cache
def _load_cached(path: str | None) -> Catalog:
    records, source = _read_json(Path(path) if path is not None else None)
    return parse_records(records, source=source)


def write_catalog(records: list[dict[str, Any]], path: Path) -> Catalog:
    """Validate the records' schema and write them as the catalog file."""
    catalog = parse_records(records, source=str(path))
    head = json.dumps({"name": "SysToolKit", "version": catalog.hash, "count": len(records)})
    lines = ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    path.write_text(f'{head[:-1]}, "tools": [\n{lines}\n]}}\n', encoding="utf-8")
    return catalog
