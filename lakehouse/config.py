"""Settings of the Delta lake: where tables live, how the sink batches and resumes, and the
defaults of the maintenance commands."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LakeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    root: str = Field(".toolrec/lake", description="Local directory or s3://bucket/prefix.")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="delta-rs storage options (AWS_* for s3://)."
    )
    batch_max_rows: int = Field(
        5000,
        ge=1,
        le=1_000_000,
        description="Flush a table's micro-batch at this many Kafka records (rows + duplicates "
        "+ dead letters)… (20,000 measured ≈ 10 % less sink CPU per row than 5,000 at the "
        "same rows/s, but a live stream of a few thousand rows/s then waits for the time "
        "bound: up to batch_max_seconds more click-to-Delta latency)",
    )
    batch_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        le=4 * 1024**3,
        description="…or at this many bytes of record values (bounds the sink's memory; a "
        "single larger record still makes a batch of one)…",
    )
    batch_max_seconds: float = Field(
        1.0, gt=0, le=3600, description="…or this long after its first record, whichever "
        "first. At a few thousand rows/s this bound, not the rows, ends a batch, so it is "
        "what a live row waits in the sink at most; a backlog fills batch_max_rows first."
    )
    sink_app_id: str = Field(
        "toolrec-lake-sink",
        min_length=1,
        max_length=200,
        description="Prefix of the Delta transaction ids that record consumed Kafka offsets "
        "(app id = '<prefix>/<topic>/<partition>'). Change it only to re-ingest a recreated "
        "topic whose offsets restarted at 0.",
    )
    group_id: str | None = Field(
        "toolrec-lake-sink",
        description="Consumer group to which the sink commits offsets after each Delta commit, "
        "for lag dashboards only (resume reads Delta). None: no group commits.",
    )
    max_record_bytes: int = Field(
        65536, ge=1024, le=64 * 1024 * 1024, description="Larger records go to the DLQ."
    )
    dedup_cache_keys: int = Field(
        500_000,
        ge=0,
        le=100_000_000,
        description="Keys (sample_id / event_id) of the most recent rows that each table's "
        "writer keeps in memory to drop duplicates without reading the table: its whole "
        "de-duplication state (≈ 110-150 B a key: 500,000 ≈ 55-75 MB, ≈ 50 s of the "
        "10,000 rows/s target). A row older than they cover (a late or replayed record) is "
        "checked in the table instead, reading only the key column of the files whose "
        "event-time range holds it: slower, never a duplicate. 0: always read the table.",
    )
    commit_retries: int = Field(
        8, ge=0, le=100, description="Retries of a Delta commit that lost a logical conflict."
    )
    optimize_target_size: int = Field(
        128 * 1024 * 1024, ge=1024 * 1024, description="Target file size of `lake optimize`."
    )
    vacuum_retention_hours: int = Field(
        168, ge=0, le=24 * 365, description="`lake vacuum` keeps removed files this long."
    )
    fast_path: bool = Field(
        True,
        description="Parse sample batches with Arrow's JSON reader, checked against the "
        "contract (lakehouse.fastparse); off: pydantic record by record. Same rows either way.",
    )
    topic_wait_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long the sink waits for its topics to exist."
    )
