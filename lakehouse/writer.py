"""Idempotent appends to one Delta table.

`DeltaAppender` is the one writer of a table. Each append
- drops rows whose Kafka offsets the table already records (Delta application transactions
  `'<sink_app_id>/<topic>/<partition>'` whose version is the next offset to consume),
- drops rows whose key (`sample_id` / `event_id`) is already in the table or earlier in the
  batch (the streams stage is at-least-once, so a sample can arrive twice at two offsets;
  how, in bounded memory, below),
- commits the remaining rows and the advanced offsets in ONE Delta commit, so data and
  progress can never disagree after a crash,
- retries when the commit loses a logical conflict (another process committed the same
  offsets, or a concurrent operation invalidated it), re-checking both filters.

Compaction and vacuum commit concurrently without harm: their commits change no data, and
an append does not read the files they rewrite.

De-duplication in bounded memory. A key determines its row's event time (`impression_ts` /
`ts`): serving stamps the event id and time together, a sample's id is its impression's
request id and position, and a re-emitted record is the same payload. Each writer keeps
`_RecentKeys`: every key of the table whose event time is at least its `floor`, and at most
`lake.dedup_cache_keys` keys (one Python set, ≈ 110-150 B a key). A batch's rows at or above
the floor are checked in that set; rows below it (late or replayed rows older than what
the set holds) are checked in the table itself: per date, the key column of only the files
whose min/max statistics of the event time overlap those rows' times (files are written in
roughly time order, so these are a few), filtered to the batch's keys. Memory is the set
plus at most one batch; what the set lacks costs a pruned read, never a duplicate.
The set stays exact because (1) it starts empty with its floor just above the newest event
time the table's file statistics record (a file without them counts as reaching the end of
its date), so a fresh writer, e.g. after a restart, is complete by construction; (2) every
key this writer commits at or above the floor is added once the commit is confirmed;
(3) evicting a chunk of keys (the one whose newest time is oldest) raises the floor above
all of that chunk's times; (4) any other writer's data commit, or a lost conflict, empties
the set and the floor is derived again.
"""

from __future__ import annotations

import heapq
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pa_fs
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.fs import DeltaStorageHandler

from lakehouse.config import LakeConfig
from lakehouse.tables import (
    BATCH_FIELD,
    COMMIT_KEY,
    NON_DATA_OPERATIONS,
    SOURCE_FIELDS,
    RowBuffer,
    Source,
    commits_after,
    ensure_table,
    spec_of,
)
from toolrec.durable import now_ms
from toolrec.errors import LakeError

__all__ = [
    "AppendResult",
    "DedupStats",
    "DeltaAppender",
    "app_id_for",
    "write_events",
    "write_samples",
]

log = logging.getLogger(__name__)

_WRITER_KEY = "toolrec_writer"

TopicPartition = tuple[str, int]


def app_id_for(prefix: str, topic: str, partition: int) -> str:
    """The Delta application-transaction id recording progress on one Kafka partition."""
    return f"{prefix}/{topic}/{partition}"


@dataclass(frozen=True)
class AppendResult:
    """What one append did. `version` is None when there was nothing to commit."""

    version: int | None
    rows_written: int
    duplicates: int  # dropped: key already in the table or earlier in the batch
    replayed: int  # dropped: offsets already recorded in the table
    files_added: int
    seconds: float
    attempts: int
    recorded: dict[TopicPartition, int] = field(default_factory=dict)  # table's offsets after
    # CPU seconds of this thread per step (refresh, dedup, write, confirm): the sink's profile
    cpu: dict[str, float] = field(default_factory=dict)


class _StaleSnapshot(Exception):
    """The snapshot we read from lost files to a concurrent vacuum: reload and retry."""


@dataclass(frozen=True)
class DedupStats:
    """The de-duplication set of one writer: keys held now, the most it ever held, and the
    event time (ms) from which it holds every key of the table (None: not derived yet)."""

    keys: int
    peak_keys: int
    floor: int | None


_EARLIEST = -(2**63)  # the floor of an empty table: the set covers every event time


class _RecentKeys:
    """Every key of the table whose event time is at least `floor`, at most `limit` keys.

    Keys arrive in chunks (one per commit) with the chunk's newest event time; when the set
    would exceed `limit`, whole chunks leave, the one with the oldest newest time first,
    and the floor rises above each one's times. So the set stays complete above the floor."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.floor: int | None = None  # None: derive it from the table before the next use
        self.keys: set[str] = set()
        self.peak = 0
        self._chunks: list[tuple[int, int, list[str]]] = []  # heap: (newest time, seq, keys)
        self._seq = 0

    def reset(self) -> None:
        """Forget everything (another writer changed data): the floor is derived again."""
        self.floor = None
        self.keys = set()
        self._chunks = []

    def start(self, newest: int | None) -> None:
        """Cover every event time after `newest`, the table's newest (None: an empty table):
        nothing in the table is that recent, so the empty set is complete above it."""
        self.floor = _EARLIEST if newest is None else newest + 1

    def add(self, keys: list[str], newest: int) -> None:
        """Hold `keys` (new to the table, event times ≤ `newest`) just committed."""
        if self.floor is None or not keys:
            return
        self._evict(room=len(keys))
        if len(keys) > self.limit:  # more than the whole set: hold none of them
            self.floor = max(self.floor, newest + 1)
            return
        self.keys.update(keys)
        self._seq += 1
        heapq.heappush(self._chunks, (newest, self._seq, keys))
        self.peak = max(self.peak, len(self.keys))

    def _evict(self, *, room: int) -> None:
        while self._chunks and len(self.keys) + room > self.limit:
            newest, _, keys = heapq.heappop(self._chunks)
            self.keys.difference_update(keys)
            self.floor = newest + 1 if self.floor is None else max(self.floor, newest + 1)


class DeltaAppender:
    """The one writer of table `name` (not thread-safe; one per process and table)."""

    def __init__(self, config: LakeConfig, name: str, *, writer_id: str | None = None) -> None:
        self.config = config
        self.spec = spec_of(name)
        self.writer_id = writer_id or f"{name}-{uuid.uuid4().hex[:12]}"
        self._dt: DeltaTable | None = None
        self._seen_version: int | None = None
        self._recent = _RecentKeys(config.dedup_cache_keys)
        self._filesystem: pa_fs.FileSystem | None = None

    @property
    def table(self) -> DeltaTable:
        if self._dt is None:
            self._dt = ensure_table(self.config, self.spec.name)
            self._seen_version = self._dt.version()
        return self._dt

    @property
    def _files(self) -> pa_fs.FileSystem:
        """The table's storage as an Arrow filesystem, paths relative to the table root."""
        if self._filesystem is None:
            handler = DeltaStorageHandler(self.table.table_uri, self.config.storage_options or None)
            self._filesystem = pa_fs.PyFileSystem(handler)
        return self._filesystem

    def app_id(self, tp: TopicPartition) -> str:
        return app_id_for(self.config.sink_app_id, tp[0], tp[1])

    def recorded_offset(self, tp: TopicPartition) -> int | None:
        """The next offset of `tp` to consume according to the table (None: never seen)."""
        self.refresh()
        return self.table.transaction_version(self.app_id(tp))

    def refresh(self) -> list[dict[str, Any]]:
        """Load commits made since we last looked; forget cached keys if another writer
        changed data. Returns the new commits' infos (newest first)."""
        dt = self.table
        before = self._seen_version
        dt.update_incremental()
        if before is None:
            self._seen_version = dt.version()
            return []
        commits = commits_after(dt, before)
        self._seen_version = max([dt.version(), *(c["version"] for c in commits)])
        if any(self._foreign_data_change(c) for c in commits):
            self._recent.reset()
        return commits

    def _foreign_data_change(self, commit: Mapping[str, Any]) -> bool:
        if commit.get(_WRITER_KEY) == self.writer_id:
            return False
        return commit.get("operation") not in NON_DATA_OPERATIONS

    def append(
        self, rows: pa.Table, *, offsets: Mapping[TopicPartition, int] | None = None
    ) -> AppendResult:
        """Append `rows` (the table's schema) once; record `offsets` (topic, partition) ->
        next offset to consume, in the same commit. Retries lost conflicts."""
        started = time.perf_counter()
        offsets = dict(offsets or {})
        for attempt in range(1, self.config.commit_retries + 2):
            try:
                result = self._try_append(rows, offsets, started, attempt)
            except (CommitFailedError, _StaleSnapshot) as exc:
                log.warning(
                    "%s: commit attempt %d lost a conflict (%s); reloading and retrying",
                    self.spec.name,
                    attempt,
                    exc,
                )
                self._recent.reset()
                time.sleep(min(0.05 * 2**attempt, 2.0))
                continue
            return result
        raise LakeError(
            f"table {self.spec.name!r}: commit still conflicting after "
            f"{self.config.commit_retries + 1} attempts; raise lake.commit_retries or check "
            f"that only one sink writes {self.spec.name!r}"
        )

    def _try_append(
        self,
        rows: pa.Table,
        offsets: dict[TopicPartition, int],
        started: float,
        attempt: int,
    ) -> AppendResult:
        clock = _Clock()
        self.refresh()
        recorded = {tp: self.table.transaction_version(self.app_id(tp)) or 0 for tp in offsets}
        clock.lap("refresh")
        batch, replayed = _drop_committed(rows, recorded)
        batch, duplicates = self._drop_duplicates(batch)
        clock.lap("dedup")
        advance = {tp: v for tp, v in offsets.items() if v > recorded[tp]}
        after = {tp: max(v, recorded[tp]) for tp, v in offsets.items()}
        if batch.num_rows == 0 and not advance:
            return AppendResult(None, 0, duplicates, replayed, 0, time.perf_counter() - started,
                                attempt, after, clock.spent)  # fmt: skip
        nonce = uuid.uuid4().hex
        write_deltalake(
            self.table,
            self._with_batch_id(batch, nonce),
            mode="append",
            commit_properties=CommitProperties(
                custom_metadata={_WRITER_KEY: self.writer_id, COMMIT_KEY: nonce},
                app_transactions=[Transaction(self.app_id(tp), v) for tp, v in advance.items()]
                or None,
            ),
        )
        clock.lap("write")
        version, files = self._own_commit(nonce)
        self._remember(batch)
        clock.lap("confirm")
        return AppendResult(
            version,
            batch.num_rows,
            duplicates,
            replayed,
            files,
            time.perf_counter() - started,
            attempt,
            after,
            clock.spent,
        )

    def _with_batch_id(self, rows: pa.Table, batch_id: str) -> pa.Table:
        """`rows` in the table's exact schema, every row stamped with this write's id."""
        column = pa.array([batch_id] * rows.num_rows, pa.string())
        if BATCH_FIELD.name in rows.column_names:
            rows = rows.drop_columns([BATCH_FIELD.name])
        rows = rows.append_column(BATCH_FIELD, column)
        try:
            return rows.select(self.spec.schema.names).cast(self.spec.schema)
        except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise LakeError(
                f"rows for {self.spec.name!r} do not match its schema: {exc}; "
                f"expected columns {self.spec.schema.names}"
            ) from exc

    def _own_commit(self, nonce: str) -> tuple[int | None, int]:
        for commit in self.refresh():
            if commit.get(COMMIT_KEY) == nonce:
                metrics = commit.get("operationMetrics") or {}
                return int(commit["version"]), int(metrics.get("num_added_files", 0))
        return self._seen_version, 0  # committed, but newer commits pushed it out of view

    def dedup_stats(self) -> DedupStats:
        """What the de-duplication set holds now and at most (benchmarks, tests)."""
        recent = self._recent
        return DedupStats(keys=len(recent.keys), peak_keys=recent.peak, floor=recent.floor)

    def _file_times(self) -> pa.Table:
        """Per data file of the snapshot: path, date, min and max event time (null: the
        file has no statistics), from the log's add actions (≈ 1 µs a file, no I/O)."""
        actions = pa.table(self.table.get_add_actions(flatten=True))
        column = {"path": "path", "date": "partition.date"}
        for bound in ("min", "max"):
            column[bound] = f"{bound}.{self.spec.time_column}"
        return pa.table({
            name: actions.column(source) if source in actions.column_names
            else pa.nulls(actions.num_rows, pa.int64())
            for name, source in column.items()
        })  # fmt: skip

    def _newest_time(self) -> int | None:
        """The newest event time in the table by its files' statistics (None: no files). A
        file without a maximum of the time column counts as reaching the end of its date."""
        files = self._file_times()
        if files.num_rows == 0:
            return None
        maxes = files.column("max")
        newest: list[int] = [v for v in [pc.max(maxes).as_py()] if v is not None]
        if maxes.null_count:
            days = pc.filter(files.column("date"), pc.is_null(maxes))
            newest += [_end_of_day(day) for day in pc.unique(days).to_pylist()]
        return max(newest)

    def _drop_duplicates(self, batch: pa.Table) -> tuple[pa.Table, int]:
        if batch.num_rows == 0:
            return batch, 0
        if self._recent.floor is None:
            self._recent.start(self._newest_time())
        keys = batch.column(self.spec.key).to_pylist()
        known = self._recent.keys
        stored = self._stored_keys(self._below_floor(batch))
        if not stored and _all_fresh(keys, known):
            return batch, 0  # the common case, in C: every key new
        seen: set[str] = set()
        keep = []
        for key in keys:
            keep.append(key not in seen and key not in known and key not in stored)
            seen.add(key)
        kept = batch.filter(pa.array(keep, pa.bool_()))
        return kept, batch.num_rows - kept.num_rows

    def _below_floor(self, batch: pa.Table) -> pa.Table | None:
        """The rows of `batch` older than the set covers (None: none, the usual case)."""
        times = batch.column(self.spec.time_column)
        floor = self._recent.floor
        if floor is None or pc.min(times).as_py() >= floor:
            return None
        return batch.filter(pc.less(times, floor))

    def _stored_keys(self, rows: pa.Table | None) -> set[str]:
        """The keys of `rows` that the table holds, read per date from the files whose
        event-time statistics overlap those rows' times."""
        found: set[str] = set()
        if rows is None:
            return found
        days, files = _days(rows), self._file_times()  # the log's file list, read once
        for day in days:
            of_day = rows if len(days) == 1 else rows.filter(pc.equal(rows.column("date"), day))
            low, high = pc.min_max(of_day.column(self.spec.time_column)).values()
            keys = of_day.column(self.spec.key).combine_chunks()
            found.update(self._read_keys(files, day, low.as_py(), high.as_py(), keys))
        return found

    def _read_keys(self, files: pa.Table, day: str, low: int, high: int,
                   keys: pa.Array) -> list[str]:
        """Which of `keys` the table holds among its rows of date `day` with event time in
        [low, high]: only the `files` (`_file_times`) whose statistics overlap are read. (Pruned
        here on the add actions: delta-rs' `file_pruning_predicate` measured ≈ 20 µs a
        file of the snapshot, 4× this whole read on 2,000 files.)"""
        overlap = pc.and_(
            pc.fill_null(pc.greater_equal(files.column("max"), low), True),
            pc.fill_null(pc.less_equal(files.column("min"), high), True),
        )
        paths = files.column("path").filter(pc.and_(pc.equal(files.column("date"), day), overlap))
        time_, key = self.spec.time_column, self.spec.key
        rows = (ds.field(time_) >= low) & (ds.field(time_) <= high) & ds.field(key).isin(keys)
        columns = pa.schema([self.spec.schema.field(key), self.spec.schema.field(time_)])
        try:
            dataset = ds.FileSystemDataset.from_paths(
                paths.to_pylist(), schema=columns, format=ds.ParquetFileFormat(),
                filesystem=self._files,
            )  # fmt: skip
            found: list[str] = dataset.to_table(columns=[key], filter=rows).column(0).to_pylist()
        except (DeltaError, OSError) as exc:
            raise _StaleSnapshot(str(exc)) from exc
        return found

    def _remember(self, batch: pa.Table) -> None:
        """Hold the committed rows' keys at or above the floor (below it, the table answers)."""
        floor = self._recent.floor
        if batch.num_rows == 0 or floor is None:
            return
        times = batch.column(self.spec.time_column)
        if pc.min(times).as_py() < floor:
            batch = batch.filter(pc.greater_equal(times, floor))
            times = batch.column(self.spec.time_column)
        if batch.num_rows:
            newest: int = pc.max(times).as_py()
            self._recent.add(batch.column(self.spec.key).to_pylist(), newest)


def _end_of_day(day: str) -> int:
    """The last millisecond (UTC) of date partition `day` ('YYYY-MM-DD')."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    return int((start + timedelta(days=1)).timestamp() * 1000) - 1


def _days(batch: pa.Table) -> list[str]:
    """The distinct dates of a batch (usually one)."""
    days: list[str] = pc.unique(batch.column("date")).to_pylist()
    return days


def _all_fresh(keys: list[str], known: set[str]) -> bool:
    """No key twice in the batch and none known: set operations, ≈ 3× the row loop."""
    return len(set(keys)) == len(keys) and known.isdisjoint(keys)


class _Clock:
    """CPU seconds of the calling thread, charged step by step (`lap`) to named steps."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self._last = time.thread_time()

    def lap(self, step: str) -> None:
        now = time.thread_time()
        self.spent[step] = self.spent.get(step, 0.0) + now - self._last
        self._last = now


def _drop_committed(rows: pa.Table, recorded: Mapping[TopicPartition, int]) -> tuple[pa.Table, int]:
    """Rows whose (topic, partition, offset) is below the table's recorded next offset."""
    done = None
    for (topic, partition), next_offset in recorded.items():
        if not next_offset:
            continue
        mask = pc.and_(
            pc.and_(
                pc.equal(rows.column("source_topic"), topic),
                pc.equal(rows.column("source_partition"), partition),
            ),
            pc.less(rows.column("source_offset"), next_offset),
        )
        done = mask if done is None else pc.or_(done, mask)
    if done is None:
        return rows, 0
    done = pc.fill_null(done, False)
    if not pc.any(done).as_py():
        return rows, 0  # the usual case: no copy of the batch
    kept = rows.filter(pc.invert(done))
    return kept, rows.num_rows - kept.num_rows


_EXTRA_COLUMNS = frozenset(f.name for f in SOURCE_FIELDS) | {"date", BATCH_FIELD.name}


def _source_of(row: Mapping[str, Any]) -> Source | None:
    if row.get("source_topic") is None:
        return None
    return Source(
        row["source_topic"],
        int(row["source_partition"]),
        int(row["source_offset"]),
        row.get("source_timestamp"),
    )


def _as_dicts(rows: Iterable[Mapping[str, Any]] | pa.Table) -> list[dict[str, Any]]:
    return rows.to_pylist() if isinstance(rows, pa.Table) else [dict(r) for r in rows]


def write_samples(config: LakeConfig, rows: Iterable[Mapping[str, Any]] | pa.Table) -> AppendResult:
    """Validate `rows` against the Sample contract and append those whose sample_id is not
    in `samples` yet (idempotent). Rows may carry the table's extra columns (date, source_*,
    ingest_ts), e.g. when copied from `read_table`; `date` is always recomputed."""
    from contracts.events import Sample, validate_payload

    buffer = RowBuffer(spec_of("samples"))
    for row in _as_dicts(rows):
        contract = {k: v for k, v in row.items() if k not in _EXTRA_COLUMNS}
        contract.setdefault("schema", "sample/1")
        sample = validate_payload(contract)
        if not isinstance(sample, Sample):
            raise LakeError(f"write_samples got a {contract['schema']!r} row; pass samples only")
        buffer.add_model(sample, raw=None, source=_source_of(row))
    table = buffer.to_table(ingest_ts=now_ms())
    return DeltaAppender(config, "samples").append(table)


def write_events(config: LakeConfig, events: Iterable[Any]) -> AppendResult:
    """Append impressions / feedback (models or dicts) to `events`, idempotent on event_id."""
    from contracts.events import Feedback, Impression, validate_payload

    buffer = RowBuffer(spec_of("events"))
    for event in events:
        model = validate_payload(dict(event)) if isinstance(event, Mapping) else event
        if not isinstance(model, Impression | Feedback):
            raise LakeError(f"write_events got {type(model).__name__}; pass impressions/feedback")
        buffer.add_model(model, raw=None, source=None)
    table = buffer.to_table(ingest_ts=now_ms())
    return DeltaAppender(config, "events").append(table)
