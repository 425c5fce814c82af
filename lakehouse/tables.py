"""The lake's tables: explicit Arrow schemas, where they live, and the readers others use.

`events` holds every raw impression and feedback event (the JSON payload as received plus
the columns analysts filter on); `samples` holds one row per shown suggestion, the `Sample`
contract of `contracts/events.py` field by field (derived from it by `contracts.arrow`).
Both are partitioned by the UTC date ('YYYY-MM-DD') of their event time and carry the Kafka
coordinates they came from (null for rows written directly, e.g. by a backfill).

Readers: `read_table` (time travel to a version or timestamp), `read_samples_since` (the
trainer's incremental refresh: rows added between two versions, exact across compaction).
Writers live in `lakehouse.writer`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from contracts.arrow import arrow_fields
from contracts.events import Feedback, Sample
from lakehouse.config import LakeConfig
from toolrec.errors import LakeError

__all__ = [
    "EVENTS_SCHEMA",
    "MODELS_SCHEMA",
    "MODELS_SPEC",
    "SAMPLES_SCHEMA",
    "SPECS",
    "Source",
    "TableSpec",
    "commits_after",
    "contract_schema",
    "empty_table",
    "ensure_table",
    "RowBuffer",
    "open_table",
    "read_samples_since",
    "read_table",
    "table_exists",
    "table_uri",
    "table_version",
    "utc_date",
]

_DAY_MS = 86_400_000
TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


# Where a row came from. Nullable: rows written directly (backfills, tests) have no Kafka origin.
SOURCE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("source_topic", pa.string()),
    pa.field("source_partition", pa.int32()),
    pa.field("source_offset", pa.int64()),
    pa.field("source_timestamp", pa.int64()),  # Kafka record timestamp, ms
    _required("ingest_ts", pa.int64()),  # wall clock (ms) when the writer built the batch
)
# The lake write that added the row; equals `toolrec_commit` in that commit's info, which is
# how `read_samples_since` finds the rows of a version range after compaction and vacuum.
BATCH_FIELD = _required("batch_id", pa.string())
COMMIT_KEY = "toolrec_commit"  # commit-info key holding the batch_id of a lake write
# Operations that never add or remove rows.
NON_DATA_OPERATIONS = frozenset(
    {"OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES", "CREATE TABLE"}
)

# The `Sample` contract's columns are derived from its one definition (`contracts.arrow`);
# the lake appends its partition date, the Kafka origin and the batch id.
SAMPLES_SCHEMA = pa.schema(
    [
        *arrow_fields(Sample),
        _required("date", pa.string()),  # UTC date of impression_ts
        *SOURCE_FIELDS,
        BATCH_FIELD,
    ]
)

EVENTS_SCHEMA = pa.schema(
    [
        _required("event_id", pa.string()),
        _required("kind", pa.string()),  # 'impression' | 'feedback'
        _required("schema", pa.string()),
        _required("user_id", pa.string()),
        _required("request_id", pa.string()),
        _required("ts", pa.int64()),
        _required("date", pa.string()),  # UTC date of ts
        pa.field("feedback_type", pa.string()),  # click | execute | dismiss; null for impressions
        pa.field("position", pa.int64()),  # feedback's position; null for impressions
        _required("payload", pa.string()),  # the event's JSON as received
        *SOURCE_FIELDS,
        BATCH_FIELD,
    ]
)

# The model registry (written through lakehouse.models only, MERGE on `version`; not by the
# lake writer, so no batch_id and no date partition). One row per model version.
MODELS_SCHEMA = pa.schema(
    [
        _required("version", pa.string()),
        _required("seq", pa.int64()),
        pa.field("parent", pa.string()),
        _required("base_model", pa.string()),
        _required("adapter_path", pa.string()),
        pa.field("data_version_from", pa.int64()),  # `samples` versions trained on: (from,
        pa.field("data_version_to", pa.int64()),  # to]; the next refresh reads from `to`
        _required("n_train", pa.int64()),
        _required("n_new", pa.int64()),
        _required("n_replay", pa.int64()),
        _required("n_holdout", pa.int64()),
        _required("n_desirable", pa.int64()),
        _required("n_undesirable", pa.int64()),
        _required("metrics", pa.string()),  # JSON: every metric, training weight summary
        _required("decision", pa.string()),  # JSON: gate outcome, reasons, checks, evidence
        _required("status", pa.string()),
        _required("created_ts", pa.int64()),
        pa.field("promoted_ts", pa.int64()),
        _required("updated_ts", pa.int64()),
        pa.field("note", pa.string()),
        pa.field("artifact_sha256", pa.string()),  # SHA-256 of the adapter's manifest.json
        pa.field("engine_path", pa.string()),  # the serving engine's conversion (promotion)
        pa.field("engine_sha256", pa.string()),  # SHA-256 of that conversion's manifest.json
    ]
)


@dataclass(frozen=True)
class TableSpec:
    """What the lake knows about one of its tables."""

    name: str
    schema: pa.Schema
    key: str  # the id that is unique in the table (writes de-duplicate on it)
    time_column: str  # event time (ms) whose UTC date is the partition
    description: str
    partition_by: tuple[str, ...] = ("date",)

    @property
    def input_schema(self) -> pa.Schema:
        """The schema of rows handed to the writer, which adds `batch_id` itself."""
        if BATCH_FIELD.name not in self.schema.names:  # e.g. the registry's own table
            return self.schema
        return self.schema.remove(self.schema.get_field_index(BATCH_FIELD.name))


SPECS: dict[str, TableSpec] = {
    "events": TableSpec(
        name="events",
        schema=EVENTS_SCHEMA,
        key="event_id",
        time_column="ts",
        description="Raw impressions and feedback from toolrec.impressions / toolrec.feedback.",
    ),
    "samples": TableSpec(
        name="samples",
        schema=SAMPLES_SCHEMA,
        key="sample_id",
        time_column="impression_ts",
        description="One calibrated sample per shown suggestion, from toolrec.samples.",
    ),
}
# Not in SPECS: the lake writer never writes it (lakehouse.models does, MERGE on `version`).
MODELS_SPEC = TableSpec(
    name="models",
    schema=MODELS_SCHEMA,
    key="version",
    time_column="created_ts",
    description="toolrec model registry (trainer.registry)",
    partition_by=(),
)

# Table properties set at creation: keep the log bounded on a sink that commits every few s.
TABLE_CONFIGURATION: dict[str, str | None] = {
    "delta.logRetentionDuration": "interval 7 days",
    "delta.deletedFileRetentionDuration": "interval 7 days",
}


@dataclass(frozen=True)
class Source:
    """Kafka coordinates of one record."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None = None


def utc_date(ts_ms: int) -> str:
    """The 'YYYY-MM-DD' UTC date of a millisecond timestamp (the partition value)."""
    return _day_string(ts_ms // _DAY_MS)


@lru_cache(maxsize=4096)
def _day_string(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


_SOURCE_NAMES = tuple(f.name for f in SOURCE_FIELDS)
# (column, model attribute) of every Sample contract field, in schema order
_SAMPLE_ATTRS = tuple(
    (name, "schema_" if name == "schema" else name)
    for name in SAMPLES_SCHEMA.names
    if name not in ("date", BATCH_FIELD.name) and name not in _SOURCE_NAMES
)


def contract_schema(name: str) -> pa.Schema:
    """The columns of `name` that its event contract defines (the rest are the lake's own)."""
    spec = spec_of(name)
    lake_columns = {"date", BATCH_FIELD.name, *_SOURCE_NAMES}
    return pa.schema([f for f in spec.schema if f.name not in lake_columns])


class RowBuffer:
    """Rows of one table accumulated column by column (cheaper than a dict per row), turned
    into an Arrow table of the spec's schema by `to_table`."""

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.columns: dict[str, list[Any]] = {name: [] for name in spec.input_schema.names}
        self._sample = spec.name == "samples"
        self._chunks: list[pa.Table] = []
        self._sample_lists = (
            [(self.columns[name], attr) for name, attr in _SAMPLE_ATTRS] if self._sample else []
        )

    def __len__(self) -> int:
        chunked: int = sum(c.num_rows for c in self._chunks)
        return len(self.columns[self.spec.key]) + chunked

    def add_arrow(
        self, contract: pa.Table, *, topic: str, partition: int, offsets: list[int],
        timestamps: list[int | None],
    ) -> None:  # fmt: skip
        """Add already-validated rows of the contract's columns (the sink's fast path), all
        from one topic partition."""
        n = contract.num_rows
        days = pc.cast(pc.divide(contract[self.spec.time_column], _DAY_MS), pa.int32())
        extra = {
            "date": pc.cast(pc.cast(days, pa.date32()), pa.string()),
            "source_topic": pa.array([topic] * n, pa.string()),
            "source_partition": pa.array([partition] * n, pa.int32()),
            "source_offset": pa.array(offsets, pa.int64()),
            "source_timestamp": pa.array(timestamps, pa.int64()),
            "ingest_ts": pa.array([0] * n, pa.int64()),  # stamped by to_table
        }
        columns = [contract[f.name] if f.name in contract.column_names else extra[f.name]
                   for f in self.spec.input_schema]  # fmt: skip
        self._chunks.append(pa.Table.from_arrays(columns, schema=self.spec.input_schema))

    def add_model(self, model: Any, *, raw: bytes | None, source: Source | None) -> None:
        """Add a validated Sample (to `samples`) or Impression / Feedback (to `events`)."""
        self.add_row(model, raw=raw)
        if source is None:
            self.add_sources(None, None, offsets=[None], timestamps=[None])
        else:
            self.add_sources(source.topic, source.partition, offsets=[source.offset],
                             timestamps=[source.timestamp])

    def add_row(self, model: Any, *, raw: bytes | None) -> None:
        """Add the contract's columns of one validated model; `add_sources` adds the rest.
        (Rows are taken apart at once: holding a batch of models alive costs more in
        garbage collection than the calls it would save.)"""
        if self._sample:
            self._add_sample(model)
        else:
            self._add_event(model, raw)

    def add_sources(
        self, topic: str | None, partition: int | None, *, offsets: Sequence[int | None],
        timestamps: Sequence[int | None],
    ) -> None:  # fmt: skip
        """The Kafka coordinates of the rows `add_row` just added, all from one topic
        partition (None: not from Kafka), in their order."""
        columns = self.columns
        columns["source_topic"].extend([topic] * len(offsets))
        columns["source_partition"].extend([partition] * len(offsets))
        columns["source_offset"].extend(offsets)
        columns["source_timestamp"].extend(timestamps)

    def _add_sample(self, sample: Any) -> None:
        values = sample.__dict__  # pydantic models keep their fields here
        for column, attr in self._sample_lists:
            column.append(values[attr])
        self.columns["date"].append(utc_date(values["impression_ts"]))

    def _add_event(self, event: Any, raw: bytes | None) -> None:
        columns = self.columns
        values = event.__dict__
        is_feedback = isinstance(event, Feedback)  # (hasattr on a pydantic model: 2 µs)
        columns["event_id"].append(values["event_id"])
        columns["kind"].append("feedback" if is_feedback else "impression")
        columns["schema"].append(values["schema_"])
        columns["user_id"].append(values["user_id"])
        columns["request_id"].append(values["request_id"])
        columns["ts"].append(values["ts"])
        columns["date"].append(utc_date(values["ts"]))
        columns["feedback_type"].append(values["type"] if is_feedback else None)
        columns["position"].append(values["position"] if is_feedback else None)
        payload = raw if raw is not None else event.to_json_bytes()
        columns["payload"].append(payload.decode())

    def to_table(self, *, ingest_ts: int) -> pa.Table:
        """The rows as an Arrow table of `spec.input_schema`; `ingest_ts` (ms) stamps them."""
        self.columns["ingest_ts"] = [ingest_ts] * len(self.columns[self.spec.key])
        try:
            table = pa.Table.from_pydict(self.columns, schema=self.spec.input_schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise LakeError(f"rows do not match the {self.spec.name!r} schema: {exc}") from exc
        if not self._chunks:
            return table
        table = pa.concat_tables([*self._chunks, table])
        index = table.schema.get_field_index("ingest_ts")
        stamp = pa.array([ingest_ts] * table.num_rows, pa.int64())
        return table.set_column(index, self.spec.input_schema.field(index), stamp)


def empty_table(name: str) -> pa.Table:
    """An empty table with the schema of `name` (one of SPECS)."""
    return spec_of(name).schema.empty_table()


def spec_of(name: str) -> TableSpec:
    spec = SPECS.get(name)
    if spec is None:
        raise LakeError(f"unknown lake table {name!r}; the lake writes {sorted(SPECS)}")
    return spec


def table_uri(config: LakeConfig, name: str) -> str:
    """Where table `name` lives: '<root>/<name>' (a local root is made absolute)."""
    if not TABLE_NAME.match(name):
        raise LakeError(f"table name {name!r} is invalid; use lowercase letters, digits and _")
    if "://" in config.root:
        return f"{config.root.rstrip('/')}/{name}"
    from pathlib import Path

    return str(Path(config.root).expanduser().resolve() / name)


def _storage(config: LakeConfig) -> dict[str, str] | None:
    return dict(config.storage_options) or None


def table_exists(config: LakeConfig, name: str) -> bool:
    return DeltaTable.is_deltatable(table_uri(config, name), storage_options=_storage(config))


def open_table(config: LakeConfig, name: str, *, version: int | None = None) -> DeltaTable:
    """Load table `name` (at `version`, default latest). Raises LakeError when it is missing."""
    uri = table_uri(config, name)
    try:
        return DeltaTable(uri, version=version, storage_options=_storage(config))
    except TableNotFoundError as exc:
        raise LakeError(
            f"table {name!r} does not exist at {uri}; start `toolrec lake sink` or write to "
            f"it first (or check lake.root={config.root!r})"
        ) from exc
    except DeltaError as exc:
        latest = table_version(config, name)
        raise LakeError(
            f"cannot load table {name!r} at version {version} (latest is {latest}): {exc}; "
            "ask for a version at most the latest, or one not yet vacuumed"
        ) from exc


def ensure_table(config: LakeConfig, name: str) -> DeltaTable:
    """Open table `name`, creating it empty with its explicit schema if it does not exist."""
    spec = spec_of(name)
    if table_exists(config, name):
        return open_table(config, name)
    uri = table_uri(config, name)
    if "://" not in uri:
        from pathlib import Path

        Path(uri).mkdir(parents=True, exist_ok=True)
    try:
        return DeltaTable.create(
            uri,
            spec.schema,
            mode="ignore",  # a concurrent creator won: use its table
            partition_by=list(spec.partition_by),
            name=spec.name,
            description=spec.description,
            configuration=TABLE_CONFIGURATION,
            storage_options=_storage(config),
        )
    except DeltaError:
        if table_exists(config, name):  # lost a creation race on the first commit
            return open_table(config, name)
        raise


def table_version(config: LakeConfig, name: str) -> int | None:
    """The latest committed version of table `name`, or None when it does not exist."""
    if not table_exists(config, name):
        return None
    return open_table(config, name).version()


def _as_utc(timestamp: datetime) -> datetime:
    return timestamp.replace(tzinfo=UTC) if timestamp.tzinfo is None else timestamp


def _conform(name: str, table: pa.Table) -> pa.Table:
    """Column order and types of the explicit schema, when the table has exactly its columns."""
    spec = SPECS.get(name)
    if spec is None or set(table.column_names) != set(spec.schema.names):
        return table
    return table.select(spec.schema.names).cast(spec.schema)


def read_table(
    config: LakeConfig,
    name: str,
    *,
    version: int | None = None,
    timestamp: datetime | None = None,
    columns: list[str] | None = None,
    filters: Any = None,
) -> pa.Table:
    """Read table `name` as of `version` or `timestamp` (naive = UTC), default the latest.

    `filters` are deltalake/pyarrow filters, e.g. [("date", ">=", "2025-01-01")].
    """
    if version is not None and timestamp is not None:
        raise LakeError(
            f"pass version ({version}) or timestamp ({timestamp}) to read_table, not both"
        )
    dt = open_table(config, name, version=version)
    if timestamp is not None:
        try:
            dt.load_as_version(_as_utc(timestamp))
        except DeltaError as exc:
            raise LakeError(
                f"table {name!r} has no version at or before {timestamp.isoformat()}: {exc}; "
                "ask for a later time (`toolrec lake history` lists the versions)"
            ) from exc
    table = dt.to_pyarrow_table(columns=columns, filters=filters)
    return table if columns is not None else _conform(name, table)


def _partitions_of_new_files(old: DeltaTable, new: DeltaTable) -> list[str]:
    """Dates of the data files in `new` that `old` does not have (appends and compactions);
    reads only the two versions' logs."""

    def files(dt: DeltaTable) -> pa.Table:
        return pa.table(dt.get_add_actions(flatten=True).select(["path", "partition.date"]))

    current = files(new)
    added = current.filter(pc.invert(pc.is_in(current.column("path"), files(old).column("path"))))
    return sorted(set(added.column("partition.date").to_pylist()) - {None})


def commits_after(dt: DeltaTable, since: int) -> list[dict[str, Any]]:
    """Commit infos of the versions after `since`, newest first, each labelled with its true
    version. (deltalake's `history(limit)` lists the log from `loaded - limit + 1` to the log's
    current end but numbers entries down from the *loaded* version, which is wrong as soon as
    another writer committed after loading; we number them up from `since + 1` instead.)"""
    loaded = dt.version()
    if loaded <= since:
        return []
    entries = dt.history(loaded - since)
    if len(entries) < loaded - since:
        raise LakeError(
            f"the log of {dt.table_uri} no longer holds versions {since + 1}..{loaded} "
            "(log retention); read the table fully instead of since a version"
        )
    for offset, entry in enumerate(reversed(entries)):
        entry["version"] = since + 1 + offset
    return entries


def _batches_between(config: LakeConfig, since: int, until: int) -> list[str]:
    """The batch ids of the data-adding commits in versions (since, until]."""
    latest = open_table(config, "samples")
    commits = [c for c in commits_after(latest, since) if c["version"] <= until]
    if len(commits) != until - since:
        raise LakeError(
            f"the log of 'samples' no longer holds versions {since + 1}..{until} "
            "(log retention); refresh fully with since_version=None"
        )
    batches = []
    for commit in commits:
        if commit.get("operation") in NON_DATA_OPERATIONS:
            continue
        metrics = commit.get("operationMetrics") or {}
        batch = commit.get(COMMIT_KEY)
        if batch is None and metrics.get("num_added_rows", 1):
            raise LakeError(
                f"version {commit.get('version')} of 'samples' ({commit.get('operation')}) was "
                "not written through lakehouse.writer, so its rows cannot be told apart; "
                "refresh fully with since_version=None"
            )
        if batch is not None:
            batches.append(batch)
    return batches


def read_samples_since(
    config: LakeConfig, since_version: int | None, *, until_version: int | None = None
) -> tuple[pa.Table, int]:
    """The `samples` rows added after `since_version` up to `until_version` (default: latest),
    and the version read. Pass the returned version as the next `since_version`.

    `since_version` None (or negative) means "from the beginning". Exact across `optimize`
    and `vacuum`: every row carries the `batch_id` of the write that added it, and the commit
    infos of (since, until] name the batches of that range, so rewritten files add no rows
    and nothing of the old version has to be read. A table that does not exist yet reads as
    empty at version -1.
    """
    if not table_exists(config, "samples"):
        return empty_table("samples"), -1
    new = open_table(config, "samples", version=until_version)
    until = new.version()
    if since_version is None or since_version < 0:
        return _conform("samples", new.to_pyarrow_table()), until
    if since_version >= until:
        return empty_table("samples"), until
    batches = _batches_between(config, since_version, until)
    if not batches:
        return empty_table("samples"), until
    where: list[tuple[str, str, Any]] = [("batch_id", "in", batches)]
    dates = _partitions_of_new_files(open_table(config, "samples", version=since_version), new)
    where.append(("date", "in", dates))
    return _conform("samples", new.to_pyarrow_table(filters=where)), until
