"""Erasure and retention in the lake: forget one pseudonymous user, drop rows past their
table's retention, and keep an audit of erasures that holds only the pseudonym and the time.

    forget_user(config, "p_…")      # {"events": 3, "samples": 9, "files_vacuumed": 4}
    apply_retention(config, {"events": 30, "samples": 365})

Each erasure is a Delta DELETE (a new version without the rows), then a vacuum at retention
0 in "lite" mode, which deletes the files that DELETE removed (and only files some commit
removed, so a running sink's uncommitted files are safe). Older table versions lose those
files: time travel to before the erasure fails, which is the point. The audit table
`privacy_audit` (pseudonym, forgotten_ts, rows) says that an erasure happened, not what was
erased.

May import: `toolrec` core, `contracts`, the lakehouse's own modules.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from lakehouse.config import LakeConfig
from lakehouse.maintenance import _retrying, list_tables, vacuum
from lakehouse.tables import open_table, table_uri
from toolrec.durable import now_ms
from toolrec.errors import LakeError

__all__ = ["AUDIT_SCHEMA", "AUDIT_TABLE", "apply_retention", "forget_user"]

log = logging.getLogger(__name__)

AUDIT_TABLE = "privacy_audit"
AUDIT_SCHEMA = pa.schema([
    pa.field("pseudonym", pa.string(), nullable=False),
    pa.field("forgotten_ts", pa.int64(), nullable=False),
    pa.field("rows", pa.int64(), nullable=False),
])
_PSEUDONYM = re.compile(r"^p_[0-9A-Za-z_-]{1,64}$")  # safe inside a SQL string literal
# (table, event-time column in ms) of the tables retention applies to
TIME_COLUMNS = {"events": "ts", "samples": "impression_ts"}


def _user_tables(config: LakeConfig) -> list[str]:
    """Tables of the lake with a `user_id` column (events, samples, any later one)."""
    out = []
    for name in list_tables(config):
        if name == AUDIT_TABLE:
            continue
        if "user_id" in open_table(config, name).schema().to_arrow().names:
            out.append(name)
    return out


def _delete(config: LakeConfig, name: str, predicate: str) -> int:
    def run() -> int:
        metrics: dict[str, Any] = open_table(config, name).delete(predicate)
        return int(metrics.get("num_deleted_rows") or 0)

    return _retrying(f"delete from {name}", config.commit_retries, run)


def forget_user(config: LakeConfig, pseudonym: str) -> dict[str, int]:
    """Delete every row of `pseudonym` from every table with a `user_id`, vacuum the removed
    files, and append one audit row. Returns rows removed per table and files vacuumed."""
    if not _PSEUDONYM.match(pseudonym):
        raise LakeError(f"{pseudonym!r} is not a pseudonym (p_ + 32 hex); pseudonymize the "
                        "raw user id with the shared key first (`toolrec privacy forget` does)")
    removed: dict[str, int] = {}
    files = 0
    for name in _user_tables(config):
        removed[name] = _delete(config, name, f"user_id = '{pseudonym}'")
        if removed[name]:
            files += len(vacuum(config, name, retention_hours=0))
    _audit(config, pseudonym, sum(removed.values()))
    log.info("forgot %s: %s rows, %d files vacuumed", pseudonym, removed, files)
    return {**removed, "files_vacuumed": files}


def _audit(config: LakeConfig, pseudonym: str, rows: int) -> None:
    from deltalake import write_deltalake

    row = pa.table({"pseudonym": [pseudonym], "forgotten_ts": [now_ms()], "rows": [rows]},
                   schema=AUDIT_SCHEMA)
    write_deltalake(table_uri(config, AUDIT_TABLE), row, mode="append",
                    storage_options=config.storage_options or None)


def apply_retention(config: LakeConfig, days: Mapping[str, int], *,
                    now: int | None = None) -> dict[str, int]:
    """Delete rows older than `days[table]` (0: keep) by event time, then vacuum; returns rows
    removed per table. The audit table's own retention uses `forgotten_ts`."""
    now = now_ms() if now is None else now
    columns = {**TIME_COLUMNS, AUDIT_TABLE: "forgotten_ts"}
    removed: dict[str, int] = {}
    present = set(list_tables(config))
    for name, keep_days in days.items():
        if keep_days <= 0 or name not in present:
            continue
        if name not in columns:
            raise LakeError(f"no retention rule for table {name!r}; known: {sorted(columns)}")
        cutoff = now - keep_days * 86_400_000
        removed[name] = _delete(config, name, f"{columns[name]} < {cutoff}")
        if removed[name]:
            vacuum(config, name, retention_hours=0)
    return removed
