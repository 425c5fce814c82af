"""The hand-written specification of SysToolKit, from which `retrieval/data/systoolkit.json`
is generated (`toolrec tools build-catalog`). Runtime code never imports this package: the
shipped data file is the catalog."""

from __future__ import annotations

from typing import Any

from . import (
    apps,
    connectivity,
    device,
    display,
    everyday,
    home,
    media,
    personal,
    places,
    sound,
    system,
)
from .hint_weights import PRIMARY, weigh
from .more_examples import more_examples

MODULES = (connectivity, display, sound, device, system, personal, media, places, apps, home,
           everyday)


def build() -> list[dict[str, Any]]:
    """All records in a stable order (module order, then as written), with the further
    phrasings of `more_examples` appended; an unknown id there is an error."""
    records = [dict(record) for module in MODULES for record in module.TOOLS]
    extra = more_examples()
    unknown = set(extra) - {r["id"] for r in records}
    if unknown:
        raise ValueError(f"more_examples names unknown tool ids: {sorted(unknown)}")
    ids = {r["id"] for r in records}
    missing = {t for tools in PRIMARY.values() for t in tools} - ids
    if missing:
        raise ValueError(f"hint_weights names unknown tool ids: {sorted(missing)}")
    by_id = {r["id"]: r for r in records}
    unlisted = [
        (h, t) for h, tools in PRIMARY.items() for t in tools if h not in by_id[t]["context"]
    ]
    if unlisted:
        raise ValueError(f"hint_weights makes tools primary for hints they lack: {unlisted}")
    for record in records:
        record["context"] = weigh(record["id"], record["context"])
        seen = {e.lower() for e in record["examples"]}
        new = [e for e in extra.get(record["id"], []) if e.lower() not in seen]
        record["examples"] = [*record["examples"], *new]
    return records
