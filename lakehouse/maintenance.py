"""Table maintenance that is safe while the sink runs: compaction, vacuum, history.

Why it is safe (delta-rs optimistic concurrency, measured in tests/lakehouse):
- `optimize` rewrites small files into large ones in a commit that changes no data
  (`dataChange=false`). A sink append committed meanwhile does not conflict with it: the
  optimize commit removes only the files it read, the append's files stay. Two compactions
  racing on the same files do conflict; the loser reloads and retries.
- `vacuum` (default "lite" mode) deletes only files that a commit removed (tombstones)
  longer than the retention ago, never files that no commit mentions, so a sink's
  in-flight, not yet committed files survive even at retention 0. `full=True` also
  deletes unreferenced files and is therefore refused below one hour of retention.
Readers of versions older than the retention lose their files: time travel is bounded by
`lake.vacuum_retention_hours`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from deltalake import CommitProperties
from deltalake.exceptions import CommitFailedError, DeltaError

from lakehouse.config import LakeConfig
from lakehouse.tables import (
    MODELS_SPEC,
    SPECS,
    TABLE_NAME,
    open_table,
    table_exists,
    table_uri,
)
from toolrec.errors import LakeError

__all__ = ["describe", "history", "list_tables", "optimize", "vacuum"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_FULL_VACUUM_MIN_HOURS = 1
_OPTIMIZE_PASSES = 4  # compaction passes at most (the second usually leaves one remainder)
# Tables other stages keep under the same root (read-only here): the trainer's registry.
KNOWN_TABLES = (*SPECS, MODELS_SPEC.name)


def _retrying(what: str, retries: int, action: Callable[[], T]) -> T:
    for attempt in range(1, retries + 2):
        try:
            return action()
        except CommitFailedError as exc:
            log.warning("%s: attempt %d lost a commit conflict (%s); retrying", what, attempt, exc)
            time.sleep(min(0.1 * 2**attempt, 2.0))
    raise LakeError(
        f"{what}: still conflicting after {retries + 1} attempts; another process keeps "
        "rewriting the same files (is a second optimize running?)"
    )


def optimize(
    config: LakeConfig,
    name: str,
    *,
    target_size: int | None = None,
    partition_filters: list[tuple[str, str, Any]] | None = None,
) -> dict[str, Any]:
    """Compact the small files of table `name` (e.g. one per sink commit) into files of at
    least `target_size` bytes (default `lake.optimize_target_size`), but for one remainder
    per date partition. Returns delta-rs metrics of the first pass, with the files removed
    and added summed over all passes and `passes`.

    delta-rs bins files by their *input* sizes up to the target, and a merged file
    compresses better than its parts (measured: sink files merge into 0.3–0.5× the target),
    so a single pass leaves files well below it. While a partition still has two or more
    files below the target, its small files are binned again up to twice the target: any
    two of them fit one bin, so each pass merges them (at most `_OPTIMIZE_PASSES`)."""
    target = target_size or config.optimize_target_size
    metrics = _compact(config, name, target, partition_filters)
    passes, removed, added = 1, metrics.get("numFilesRemoved", 0), metrics.get("numFilesAdded", 0)
    while passes < _OPTIMIZE_PASSES:
        dates = _partitions_with_small_files(config, name, target)
        if not dates:
            break
        where = [*(partition_filters or []), *([("date", "in", dates)] if dates != [None] else [])]
        again = _compact(config, name, 2 * target, where or None)
        passes += 1
        if not again.get("numFilesAdded"):
            break  # nothing merged (e.g. files between the target and twice it)
        removed += again.get("numFilesRemoved", 0)
        added += again.get("numFilesAdded", 0)
    log.info("optimize %s: %s files removed, %s added in %d passes", name, removed, added, passes)
    return {**metrics, "numFilesRemoved": removed, "numFilesAdded": added, "passes": passes}


def _compact(
    config: LakeConfig, name: str, target: int, filters: list[tuple[str, str, Any]] | None
) -> dict[str, Any]:
    def compact() -> dict[str, Any]:
        dt = open_table(config, name)  # reload on every attempt
        return dt.optimize.compact(
            partition_filters=filters,
            target_size=target,
            commit_properties=CommitProperties(custom_metadata={"toolrec_writer": "optimize"}),
        )

    return _retrying(f"optimize {name}", config.commit_retries, compact)


def _partitions_with_small_files(config: LakeConfig, name: str, target: int) -> list[Any]:
    """Date partitions (or [None] for an unpartitioned table) with 2+ files below `target`."""
    actions = pa.table(open_table(config, name).get_add_actions(flatten=True))
    if not actions.num_rows:
        return []
    dates = (
        actions.column("partition.date").to_pylist()
        if "partition.date" in actions.column_names
        else [None] * actions.num_rows
    )
    small: dict[Any, int] = {}
    for date, size in zip(dates, actions.column("size_bytes").to_pylist(), strict=True):
        if size < target:
            small[date] = small.get(date, 0) + 1
    return sorted((d for d, n in small.items() if n > 1), key=str)


def vacuum(
    config: LakeConfig,
    name: str,
    *,
    retention_hours: int | None = None,
    dry_run: bool = False,
    full: bool = False,
) -> list[str]:
    """Delete files removed from table `name` more than `retention_hours` ago (default
    `lake.vacuum_retention_hours`); returns the (would-be) deleted paths."""
    hours = config.vacuum_retention_hours if retention_hours is None else retention_hours
    if hours < 0:
        raise LakeError(f"retention_hours must be >= 0, got {hours}")
    if full and hours < _FULL_VACUUM_MIN_HOURS:
        raise LakeError(
            f"full vacuum with retention {hours} h could delete files a running sink has "
            f"written but not committed yet; use >= {_FULL_VACUUM_MIN_HOURS} h or lite mode"
        )

    def run() -> list[str]:
        dt = open_table(config, name)
        return dt.vacuum(
            retention_hours=hours,
            dry_run=dry_run,
            enforce_retention_duration=False,  # the caller chose the retention explicitly
            full=full,
        )

    try:
        deleted = _retrying(f"vacuum {name}", config.commit_retries, run)
    except DeltaError as exc:
        raise LakeError(f"vacuum of {name!r} failed: {exc}") from exc
    log.info("vacuum %s: %d files %s", name, len(deleted), "to delete" if dry_run else "deleted")
    return deleted


def history(config: LakeConfig, name: str, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Commit infos of table `name`, newest first (version, timestamp, operation, metrics)."""
    return open_table(config, name).history(limit)


def list_tables(config: LakeConfig) -> list[str]:
    """Delta tables under `lake.root`: every subdirectory of a local root, the known names
    of a remote one."""
    if "://" in config.root:
        return [name for name in KNOWN_TABLES if table_exists(config, name)]
    root = Path(table_uri(config, "events")).parent
    if not root.is_dir():
        return []
    return [
        p.name
        for p in sorted(root.iterdir())
        if TABLE_NAME.match(p.name) and (p / "_delta_log").is_dir()
    ]


def describe(config: LakeConfig, name: str) -> dict[str, Any]:
    """Version, live files, rows, bytes and partitions of table `name`."""
    dt = open_table(config, name)
    actions = pa.table(dt.get_add_actions(flatten=True))
    partitions = (
        len(set(actions.column("partition.date").to_pylist()))
        if "partition.date" in actions.column_names
        else 0
    )
    rows = actions.column("num_records").to_pylist() if actions.num_rows else []
    return {
        "table": name,
        "version": dt.version(),
        "files": actions.num_rows,
        "rows": sum(r or 0 for r in rows),
        "bytes": sum(actions.column("size_bytes").to_pylist()) if actions.num_rows else 0,
        "partitions": partitions,
        "uri": dt.table_uri,
    }
