"""The hand-written specification of SysToolKit, from which `retrieval/data/systoolkit.json`
is generated (`toolrec tools build-catalog`). Runtime code never imports this package: the
shipped data file is the catalog."""

from __future__ import annotations

from typing import Any

from . import apps, connectivity, device, display, home, media, personal, places, sound, system
from .more_examples import more_examples

MODULES = (connectivity, display, sound, device, system, personal, media, places, apps, home)


def build() -> list[dict[str, Any]]:
    """All records in a stable order (module order, then as written), with the further
    phrasings of `more_examples` appended; an unknown id there is an error."""
    records = [dict(record) for module in MODULES for record in module.TOOLS]
    extra = more_examples()
    unknown = set(extra) - {r["id"] for r in records}
    if unknown:
        raise ValueError(f"more_examples names unknown tool ids: {sorted(unknown)}")
    for record in records:
        seen = {e.lower() for e in record["examples"]}
        new = [e for e in extra.get(record["id"], []) if e.lower() not in seen]
        record["examples"] = [*record["examples"], *new]
    return records
