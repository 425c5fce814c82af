"""Import layering: each stage imports only the contracts, the core and the public parts of
the stages below it. The allowed edges are written once, in `ALLOWED`; `DEBTS` lists the
edges that still break the rule (each with why), and fails once one is gone so the table
shrinks with the code. Imports are read with `ast`, so lazy imports inside functions count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toolrec", "contracts", "generator", "infra", "retrieval", "streams", "lakehouse",
            "trainer", "serving", "loop", "bench")

# importer package -> module prefixes it may import from other first-party packages.
# A prefix "generator.prompt" allows that module only; "generator" allows the package.
ALLOWED: dict[str, tuple[str, ...]] = {
    "toolrec": (),  # except the aggregators, see AGGREGATORS
    "contracts": ("toolrec",),
    "generator": ("contracts", "toolrec"),
    "infra": ("toolrec",),
    "retrieval": ("toolrec", "generator.loading"),  # the process-wide model-load lock
    "streams": ("contracts", "toolrec", "infra", "generator.prompt"),
    "lakehouse": ("contracts", "toolrec"),
    "trainer": ("contracts", "toolrec", "generator", "retrieval", "lakehouse"),
    # serving reads the model registry (lakehouse.ModelsTable, public API only): a hot-swap
    # must check an announced model against the registry's path and checksum, never trust
    # the announcement alone, and the registry is a lake table.
    "serving": ("contracts", "toolrec", "generator", "retrieval", "lakehouse"),  # PUBLIC_ONLY
    "loop": ("contracts", "toolrec", "generator", "infra", "retrieval", "streams", "lakehouse",
             "trainer"),
    "bench": PACKAGES,
}
# Importers that may use these packages only through the names their __init__ exports.
PUBLIC_ONLY: dict[str, tuple[str, ...]] = {"serving": ("retrieval", "lakehouse")}
# The only imports that run back up the layering: the configuration and CLI aggregators.
AGGREGATORS: dict[str, tuple[str, ...]] = {
    "toolrec.config": tuple(f"{p}.config" for p in PACKAGES),
    "toolrec.cli": tuple(f"{p}.cli" for p in PACKAGES),
}
# Every stage's command group and app wiring may read the aggregated settings.
SETTINGS_READERS = ("toolrec.config", "toolrec.cli")
# Edges that break the layering today, with why; remove an entry when its edge is gone.
DEBTS: dict[tuple[str, str], str] = {}


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _edges() -> Iterator[tuple[str, str, str]]:
    """(importer module, importer package, imported first-party name) across packages."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for name in _imports(path):
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    yield module, package, name


def _covered(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _allowed(module: str, package: str, name: str) -> bool:
    if _covered(name, ALLOWED[package]):
        return True
    if _covered(module, tuple(AGGREGATORS)) and _covered(name, AGGREGATORS[module]):
        return True
    return _covered(name, SETTINGS_READERS)


def test_no_stage_imports_outside_its_allowed_edges() -> None:
    bad = sorted({f"{module} imports {name}" for module, package, name in _edges()
                  if not _allowed(module, package, name)
                  and not any(package == p and _covered(name, (d,)) for p, d in DEBTS)})
    assert not bad, "imports outside the layering table (tests/test_layering.py):\n" + "\n".join(
        bad)


def _exports(package: str) -> set[str]:
    """`__all__` of the package: a literal list, or `sorted(_EXPORTS)` over the dict of a
    package whose exports load lazily (lakehouse)."""
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    assigned = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    value = assigned.get("__all__")
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) \
            and value.func.id == "sorted" and isinstance(value.args[0], ast.Name):
        value = assigned[value.args[0].id]
    return set(ast.literal_eval(value)) if value is not None else set()


def test_public_only_packages_are_used_through_their_exports() -> None:
    bad = sorted({f"{module} imports {name}" for module, package, name in _edges()
                  for public in PUBLIC_ONLY.get(package, ())
                  if _covered(name, (public,)) and name != public
                  and name.split(".")[1] not in _exports(public)})
    assert not bad, "imports past a package's public exports:\n" + "\n".join(bad)


def test_no_stage_imports_another_stages_private_names() -> None:
    private = sorted({f"{module} imports {name}" for module, _, name in _edges()
                      if any(part.startswith("_") and not part.startswith("__")
                             for part in name.split(".")[1:])})
    assert not private, "private names used across packages:\n" + "\n".join(private)


def test_every_recorded_debt_still_exists() -> None:
    edges = {(package, name) for _, package, name in _edges()}
    gone = [debt for debt in DEBTS
            if not any(p == debt[0] and _covered(n, (debt[1],)) for p, n in edges)]
    assert not gone, f"these layering debts are paid: remove them from DEBTS: {gone}"


def test_every_package_says_what_it_owns_and_may_import() -> None:
    for package in PACKAGES:
        doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text())) or ""
        assert doc, f"{package}/__init__.py has no docstring"
        assert "import" in doc.lower(), f"{package}/__init__.py does not say what it imports"
