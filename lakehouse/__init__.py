"""lakehouse: the Delta tables of toolrec and everything that writes or maintains them.

Owns the `events` and `samples` tables (explicit Arrow schemas in `lakehouse.tables`), the
exactly-once-in-effect sink from Kafka (`lakehouse.sink`), the model registry's table
(`lakehouse.models.ModelsTable`: champion reads, status MERGEs, rollback, announcements;
the trainer's registry builds on it, serving reads it), idempotent appends
(`lakehouse.writer`), maintenance (`lakehouse.maintenance`: optimize, vacuum, history),
erasure and retention (`lakehouse.privacy`: forget a user, audit table), SQL
for analysts (`lakehouse.sql`, DuckDB over Arrow) and the `toolrec lake` CLI.

May import: `toolrec` core (errors, kafka, durable) and `contracts` (the events,
the sample and its derived Arrow columns, the DLQ record); never `streams`, `trainer`,
`serving` or `loop`. Other stages call the functions re-exported
here (`read_table`, `read_samples_since`, `table_version`, `write_samples`, ...).

Exports are loaded lazily so that importing `lakehouse.config` (done by every CLI start)
does not import deltalake and pyarrow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SAMPLES_SCHEMA": "lakehouse.tables",
    "ModelsTable": "lakehouse.models",
    "EVENTS_SCHEMA": "lakehouse.tables",
    "table_uri": "lakehouse.tables",
    "table_version": "lakehouse.tables",
    "table_exists": "lakehouse.tables",
    "read_table": "lakehouse.tables",
    "read_samples_since": "lakehouse.tables",
    "write_samples": "lakehouse.writer",
    "write_events": "lakehouse.writer",
    "DeltaAppender": "lakehouse.writer",
    "run_sink": "lakehouse.sink",
    "SinkStats": "lakehouse.sink",
    "CommitInfo": "lakehouse.sink",
    "optimize": "lakehouse.maintenance",
    "vacuum": "lakehouse.maintenance",
    "history": "lakehouse.maintenance",
    "sql": "lakehouse.sql",
    "forget_user": "lakehouse.privacy",
    "apply_retention": "lakehouse.privacy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lakehouse' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
