"""The SysToolKit validator (`toolrec tools validate`).

Structural checks need nothing but the catalog: schema (already enforced when loading),
unique ids, id/category agreement, non-empty one-sentence descriptions, at least three
distinct examples owned by one tool only, parameter sanity (types, enum values, ranges,
every `{placeholder}` declared and every param used by the action), action shape per kind,
known action targets (`retrieval/data/actions.json`: Android platform classes for `api`,
SDK namespaces or listed app-exported actions for `intent`, Matter clusters for `matter`,
registered provider-neutral capabilities for `capability`; no `$PLACEHOLDER` packages),
known context hints, and the catalog's size. The near-duplicate check embeds every
description and reports pairs whose cosine reaches the threshold (0.95 by default: the
paraphrased descriptions it was set against score 0.97-0.98, distinct sibling tools such as
lock / unlock at most 0.94).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from retrieval.catalog import Catalog, Tool
from retrieval.context import parse_hint
from retrieval.encoder import Encoder

MIN_TOOLS = 708
MIN_CATEGORIES = 20
MIN_EXAMPLES = 3
NUMERIC = {"integer", "number", "duration"}

_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_PARAM = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DOTTED = re.compile(r"^[A-Za-z][\w]*(\.[\w]+)+$")
_PACKAGE = re.compile(r"^[A-Za-z][\w]*(\.[\w]+)+$")
ACTIONS_RESOURCE = "actions.json"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:")
_TARGETS = {
    "settings": _DOTTED,
    "intent": _DOTTED,
    "panel": re.compile(r"^android\.settings\.panel\.action\.[A-Z_]+$"),
    "deeplink": re.compile(r"^android\.intent\.action\.VIEW$"),
    "launch": re.compile(r"^android\.intent\.action\.MAIN$"),
    "api": re.compile(r"^[A-Z]\w*(\.\w+)+$"),
    "setting": re.compile(r"^Settings\.(System|Secure|Global)\.[A-Z_]+$"),
    "media_key": re.compile(r"^KeyEvent\.KEYCODE_[A-Z_]+$"),
    "global_action": re.compile(r"^AccessibilityService\.GLOBAL_ACTION_[A-Z_]+$"),
    "matter": re.compile(r"^[A-Z]\w*(\.\w+)*$"),
    "capability": re.compile(r"^[a-z]+(\.[a-z_]+)+$"),
}


@dataclass(frozen=True)
class Problem:
    code: str
    tool_id: str
    message: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.tool_id}: {self.message}"


@dataclass
class ValidationReport:
    n_tools: int
    n_categories: int
    problems: list[Problem] = field(default_factory=list)
    near_duplicates: list[tuple[str, str, float]] = field(default_factory=list)
    threshold: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and not self.near_duplicates


def check_catalog(catalog: Catalog, *, min_tools: int = MIN_TOOLS,
                  min_categories: int = MIN_CATEGORIES) -> list[Problem]:
    """All structural problems of the catalog (empty list = valid)."""
    problems: list[Problem] = []
    ids = Counter(t.id for t in catalog.tools)
    problems += [Problem("duplicate-id", i, f"appears {n} times") for i, n in ids.items() if n > 1]
    owners: dict[str, set[str]] = {}
    for tool in catalog.tools:
        problems += check_tool(tool)
        for example in tool.examples:
            owners.setdefault(_norm(example), set()).add(tool.id)
    problems += [Problem("shared-example", sorted(o)[0], f"example {e!r} also belongs to "
                         f"{', '.join(sorted(o)[1:])}") for e, o in owners.items() if len(o) > 1]
    if len(catalog) < min_tools:
        problems.append(Problem("too-few-tools", "*", f"{len(catalog)} tools, need {min_tools}"))
    if len(catalog.categories) < min_categories:
        problems.append(Problem("too-few-categories", "*",
                                f"{len(catalog.categories)} categories, need {min_categories}"))
    return problems


def check_tool(tool: Tool) -> list[Problem]:
    """Problems of one record."""
    out = [Problem(code, tool.id, msg) for code, msg in _basic(tool)]
    out += [Problem("param", tool.id, msg) for msg in _params(tool)]
    out += [Problem("action", tool.id, msg) for msg in _action(tool)]
    for hint in tool.context:
        try:
            parse_hint(hint)
        except ValueError as exc:
            out.append(Problem("context", tool.id, str(exc)))
    return out


def _basic(tool: Tool) -> list[tuple[str, str]]:
    out = []
    if not _ID.match(tool.id):
        out.append(("id", f"id {tool.id!r} is not dotted lower_snake segments"))
    if tool.category != tool.id.split(".", 1)[0]:
        out.append(("category", f"category {tool.category!r} is not the id's first segment"))
    for name in ("name", "description"):
        if not getattr(tool, name).strip():
            out.append(("empty", f"{name} is empty"))
    desc = tool.description.strip()
    if desc and (not desc.endswith(".") or re.search(r"[.!?]\s+[A-Z]", desc)):
        out.append(("description", "description must be one sentence ending with '.'"))
    distinct = {_norm(e) for e in tool.examples if e.strip()}
    if len(distinct) < MIN_EXAMPLES:
        out.append(("examples", f"{len(distinct)} distinct examples, need {MIN_EXAMPLES}"))
    if len(distinct) != len(tool.examples):
        out.append(("examples", "examples repeat or are empty"))
    return out


def _params(tool: Tool) -> list[str]:
    out = []
    names = [p.name for p in tool.params]
    out += [f"param {n!r} declared twice" for n, c in Counter(names).items() if c > 1]
    for p in tool.params:
        if not _PARAM.match(p.name):
            out.append(f"param name {p.name!r} is not lower_snake")
        if p.type == "enum" and (not p.values or len(set(p.values)) < 2):
            out.append(f"enum param {p.name!r} needs at least two distinct values")
        if p.type != "enum" and p.values:
            out.append(f"param {p.name!r} lists values but is {p.type}, not enum")
        if (p.min is not None or p.max is not None) and p.type not in NUMERIC:
            out.append(f"param {p.name!r} has a range but is {p.type}")
        if p.min is not None and p.max is not None and p.min > p.max:
            out.append(f"param {p.name!r} range is empty: min {p.min} > max {p.max}")
    used = set(_PLACEHOLDER.findall(_action_text(tool)))
    out += [f"action uses {{{u}}} but no param {u!r} is declared"
            for u in sorted(used - set(names))]
    out += [f"param {n!r} is never used by the action" for n in names if n not in used]
    return out


def _action(tool: Tool) -> list[str]:
    a, out = tool.action, []
    pattern = _TARGETS[a.kind]
    if not pattern.match(a.target):
        out.append(f"{a.kind} target {a.target!r} does not match {pattern.pattern}")
    if a.kind == "launch" and not (a.package and _PACKAGE.match(a.package)):
        out.append(f"launch needs an Android package name, got {a.package!r}")
    if a.kind == "deeplink" and not (a.uri and _SCHEME.match(a.uri)):
        out.append(f"deeplink needs a URI with a scheme, got {a.uri!r}")
    if a.kind in ("settings", "panel") and a.constant is None:
        out.append(f"{a.kind} action should name its Java constant")
    if a.package is not None and a.kind != "launch" and not _PACKAGE.match(a.package):
        out.append(f"package {a.package!r} is not an Android package name; a provider chosen "
                   "at run time is a `capability` action")
    unknown = unknown_target(a.kind, a.target)
    if unknown:
        out.append(unknown)
    return out


@cache
def known_actions() -> dict[str, Any]:
    """The registry of known action targets (`retrieval/data/actions.json`)."""
    text = resources.files("retrieval.data").joinpath(ACTIONS_RESOURCE).read_text("utf-8")
    registry: dict[str, Any] = json.loads(text)
    return registry


def unknown_target(kind: str, target: str) -> str | None:
    """Why the target is not a known action of its kind (None when it is known). Kinds
    whose targets the patterns in `_TARGETS` already pin down are not listed."""
    reg = known_actions()
    head = target.rsplit(".", 1)[0] if kind == "api" else target.split(".", 1)[0]
    checks = {
        "api": (head in reg["api_classes"],
                f"{head!r} is not a known Android platform class; add it to "
                f"{ACTIONS_RESOURCE} with its documentation, or use an intent or a capability"),
        "intent": (target.startswith(tuple(reg["intent_namespaces"]))
                   or target in reg["app_actions"],
                   "is neither in an Android SDK namespace nor a listed app-exported action "
                   f"in {ACTIONS_RESOURCE}"),
        "matter": (head in reg["matter_clusters"], f"{head!r} is not a known Matter cluster"),
        "capability": (target in reg["capabilities"],
                       f"is not registered in {ACTIONS_RESOURCE}; register it with how it is "
                       "resolved at run time"),
    }
    if kind not in checks or checks[kind][0]:
        return None
    return f"{kind} target {target!r}: {checks[kind][1]}"


def _action_text(tool: Tool) -> str:
    """Every string of the action (target, uri, extras and args keys and values)."""
    def strings(value: object) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
        if isinstance(value, (list, tuple)):
            return [s for v in value for s in strings(v)]
        return []

    return "\n".join(strings(tool.action.model_dump()))


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def near_duplicates(catalog: Catalog, vectors: np.ndarray,
                    threshold: float) -> list[tuple[str, str, float]]:
    """Pairs of tools whose description vectors have cosine ≥ threshold, closest first."""
    sims = vectors @ vectors.T
    rows, cols = np.where(np.triu(sims, k=1) >= threshold)
    pairs = [(catalog.tools[i].id, catalog.tools[j].id, round(float(sims[i, j]), 4))
             for i, j in zip(rows, cols, strict=True)]
    return sorted(pairs, key=lambda p: -p[2])


def validate_catalog(catalog: Catalog, *, encoder: Encoder | None = None,
                     vectors: np.ndarray | None = None, threshold: float = 0.95,
                     min_tools: int = MIN_TOOLS,
                     min_categories: int = MIN_CATEGORIES) -> ValidationReport:
    """Structural checks, plus near-duplicates when an encoder or description vectors are
    given (vectors: one normalized row per tool, in catalog order)."""
    report = ValidationReport(len(catalog), len(catalog.categories),
                              check_catalog(catalog, min_tools=min_tools,
                                            min_categories=min_categories))
    if vectors is None and encoder is not None:
        vectors = encoder.encode([t.description for t in catalog.tools])
    if vectors is not None:
        report.threshold = threshold
        report.near_duplicates = near_duplicates(catalog, vectors, threshold)
    return report
