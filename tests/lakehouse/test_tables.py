"""Schemas, readers and idempotent writes on real Delta tables in tmp dirs (no broker)."""

from __future__ import annotations

import threading
import time
import typing
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from contracts.events import Feedback, Impression, Sample
from lakehouse import (
    read_samples_since,
    read_table,
    table_uri,
    table_version,
    write_events,
    write_samples,
)
from lakehouse.config import LakeConfig
from lakehouse.maintenance import optimize, vacuum
from lakehouse.tables import EVENTS_SCHEMA, SAMPLES_SCHEMA, RowBuffer, Source, spec_of, utc_date
from lakehouse.writer import DeltaAppender
from tests.lakehouse.helpers import DAY_MS, T0, feedback, impression, sample
from toolrec.errors import LakeError, ValidationError

EXTRA = {"date", "source_topic", "source_partition", "source_offset", "source_timestamp",
         "ingest_ts", "batch_id"}  # fmt: skip


@pytest.fixture
def lake(tmp_path: Path) -> LakeConfig:
    return LakeConfig(root=str(tmp_path / "lake"))


def _ids(table: pa.Table) -> list[str]:
    return sorted(table.column("sample_id").to_pylist())


def _contract(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in EXTRA}


# -- schemas ---------------------------------------------------------------------------
def test_samples_schema_matches_the_sample_contract_field_by_field() -> None:
    fields = {f.alias or name: f for name, f in Sample.model_fields.items()}
    columns = [n for n in SAMPLES_SCHEMA.names if n not in EXTRA]
    assert columns == list(fields)  # same names, same order
    for name in columns:
        optional = type(None) in typing.get_args(fields[name].annotation)
        assert SAMPLES_SCHEMA.field(name).nullable == optional, name


def test_samples_schema_types_hold_every_contract_value() -> None:
    row = Sample.model_validate(sample(7)).model_dump(by_alias=True)
    buffer = RowBuffer(spec_of("samples"))
    buffer.add_model(Sample.model_validate(sample(7)), raw=None, source=Source("t", 1, 9, 5))
    table = buffer.to_table(ingest_ts=123)
    assert table.schema == spec_of("samples").input_schema  # the writer adds batch_id
    assert _contract(table.to_pylist()[0]) == row
    assert table.column("date").to_pylist() == [utc_date(row["impression_ts"])]


def test_events_rows_keep_the_raw_payload_and_key_columns() -> None:
    buffer = RowBuffer(spec_of("events"))
    raw = b'{"schema": "feedback/1", "event_id": "fb-1"}'  # payload is kept verbatim
    buffer.add_model(Feedback.model_validate(feedback(1)), raw=raw, source=None)
    buffer.add_model(Impression.model_validate(impression(2)), raw=None, source=None)
    rows = buffer.to_table(ingest_ts=1).to_pylist()
    assert buffer.to_table(ingest_ts=1).schema == spec_of("events").input_schema
    assert spec_of("events").schema == EVENTS_SCHEMA
    assert rows[0]["payload"] == raw.decode()
    assert (rows[0]["kind"], rows[0]["feedback_type"], rows[0]["position"]) == (
        "feedback", "click", 1)  # fmt: skip
    assert (rows[1]["kind"], rows[1]["feedback_type"], rows[1]["ts"]) == (
        "impression",
        None,
        T0 + 2,
    )
    assert Impression.model_validate_json(rows[1]["payload"]).event_id == "imp-2"


def test_utc_date_is_the_partition_value() -> None:
    assert utc_date(0) == "1970-01-01"
    assert utc_date(T0) == datetime.fromtimestamp(T0 / 1000, UTC).strftime("%Y-%m-%d")
    assert utc_date(DAY_MS - 1) == "1970-01-01"
    assert utc_date(DAY_MS) == "1970-01-02"


# -- writes ----------------------------------------------------------------------------
def test_write_samples_is_idempotent_on_sample_id(lake: LakeConfig) -> None:
    first = write_samples(lake, [sample(i) for i in range(30)])
    again = write_samples(lake, [sample(i) for i in range(20, 40)] + [sample(3), sample(39)])
    assert (first.rows_written, first.duplicates) == (30, 0)
    assert (again.rows_written, again.duplicates) == (10, 12)
    table = read_table(lake, "samples")
    assert _ids(table) == sorted({sample(i)["sample_id"] for i in range(40)})
    assert table.schema == SAMPLES_SCHEMA
    # rows read back can be written again (backfill from a copy) without duplicating
    assert write_samples(lake, table).rows_written == 0


def test_write_samples_validates_against_the_contract(lake: LakeConfig) -> None:
    bad = sample(1) | {"request_id": ""}
    with pytest.raises(ValidationError) as info:
        write_samples(lake, [sample(0), bad])
    assert info.value.field == "request_id"
    assert table_version(lake, "samples") is None  # nothing half-written


def test_write_events_is_idempotent_on_event_id(lake: LakeConfig) -> None:
    write_events(lake, [impression(1), feedback(1)])
    result = write_events(lake, [impression(1), feedback(1), feedback(2)])
    assert (result.rows_written, result.duplicates) == (1, 2)
    assert sorted(read_table(lake, "events").column("event_id").to_pylist()) == [
        "fb-1", "fb-2", "imp-1"]  # fmt: skip


def _kafka_rows(indices: range, *, topic: str = "toolrec.samples", partition: int = 0) -> pa.Table:
    buffer = RowBuffer(spec_of("samples"))
    for i in indices:
        model = Sample.model_validate(sample(i))
        buffer.add_model(model, raw=None, source=Source(topic, partition, i, T0))
    return buffer.to_table(ingest_ts=int(time.time() * 1000))


def test_replaying_a_kafka_range_never_duplicates(lake: LakeConfig) -> None:
    appender = DeltaAppender(lake, "samples")
    tp = ("toolrec.samples", 0)
    appender.append(_kafka_rows(range(0, 50)), offsets={tp: 50})
    # a restarted sink that re-reads 40..79: 40..49 are skipped by offset, not by luck
    replay = DeltaAppender(lake, "samples").append(_kafka_rows(range(40, 80)), offsets={tp: 80})
    assert (replay.rows_written, replay.replayed, replay.duplicates) == (30, 10, 0)
    assert replay.recorded == {tp: 80}
    # the same samples at other offsets (at-least-once upstream) are dropped by sample_id
    moved = _kafka_rows(range(60, 90), partition=1)
    dup = DeltaAppender(lake, "samples").append(moved, offsets={("toolrec.samples", 1): 30})
    assert (dup.rows_written, dup.duplicates) == (10, 20)
    assert appender.recorded_offset(tp) == 80
    assert appender.recorded_offset(("toolrec.samples", 1)) == 30
    assert _ids(read_table(lake, "samples")) == sorted(sample(i)["sample_id"] for i in range(90))


def test_offsets_advance_even_when_every_record_was_dropped(lake: LakeConfig) -> None:
    appender = DeltaAppender(lake, "samples")
    appender.append(_kafka_rows(range(10)), offsets={("toolrec.samples", 0): 10})
    result = appender.append(_kafka_rows(range(0)), offsets={("toolrec.samples", 0): 25})
    assert result.version is not None and result.rows_written == 0
    assert appender.recorded_offset(("toolrec.samples", 0)) == 25


def test_two_writers_committing_the_same_offsets_write_once(lake: LakeConfig) -> None:
    """A zombie sink and its successor both flush offsets 0..99: one commit wins, the loser
    reloads, sees the offsets recorded and writes nothing."""
    a, b = DeltaAppender(lake, "samples"), DeltaAppender(lake, "samples")
    a.refresh(), b.refresh()
    tp = ("toolrec.samples", 0)
    ra = a.append(_kafka_rows(range(100)), offsets={tp: 100})
    rb = b.append(_kafka_rows(range(100)), offsets={tp: 100})
    assert ra.rows_written == 100
    assert rb.rows_written == 0 and rb.replayed == 100
    assert read_table(lake, "samples").num_rows == 100


# -- readers ---------------------------------------------------------------------------
def test_time_travel_by_version_and_timestamp(lake: LakeConfig) -> None:
    write_samples(lake, [sample(i) for i in range(10)])
    v1 = table_version(lake, "samples")
    time.sleep(0.05)
    middle = datetime.now(UTC)
    time.sleep(0.05)
    write_samples(lake, [sample(i) for i in range(10, 25)])
    assert read_table(lake, "samples").num_rows == 25
    assert read_table(lake, "samples", version=v1).num_rows == 10
    assert read_table(lake, "samples", timestamp=middle).num_rows == 10
    naive = middle.replace(tzinfo=None)  # naive timestamps are UTC
    assert read_table(lake, "samples", timestamp=naive).num_rows == 10
    picked = read_table(lake, "samples", columns=["sample_id", "weight"],
                        filters=[("clicked", "=", True)])  # fmt: skip
    assert picked.column_names == ["sample_id", "weight"]
    assert picked.num_rows == sum(sample(i)["clicked"] for i in range(25))
    with pytest.raises(LakeError, match="not both"):
        read_table(lake, "samples", version=1, timestamp=middle)
    with pytest.raises(LakeError, match="version 99"):
        read_table(lake, "samples", version=99)


def test_reading_a_missing_table_says_how_to_fix_it(lake: LakeConfig) -> None:
    assert table_version(lake, "events") is None
    with pytest.raises(LakeError, match="does not exist") as info:
        read_table(lake, "events")
    assert table_uri(lake, "events") in str(info.value)
    assert read_samples_since(lake, None)[1] == -1


def test_read_samples_since_is_exact_across_optimize_and_vacuum(lake: LakeConfig) -> None:
    seen: list[str] = []
    version: int | None = None
    written = []
    for day, chunk in enumerate((range(0, 20), range(20, 35), range(35, 60))):
        written.append(write_samples(lake, [sample(i, day=day % 2) for i in chunk]).version)
        again = write_samples(lake, [sample(i, day=day % 2) for i in chunk])
        assert again.version is None  # nothing new: no commit at all
        if day == 1:
            optimize(lake, "samples")  # rewrites files, adds no rows
        rows, version = read_samples_since(lake, version)
        seen += rows.column("sample_id").to_pylist()
        assert rows.schema == SAMPLES_SCHEMA
    assert sorted(seen) == sorted(sample(i)["sample_id"] for i in range(60))
    assert len(seen) == 60
    # a refresh right after a compaction-only commit returns nothing new
    optimize(lake, "samples")
    rows, after = read_samples_since(lake, version)
    assert rows.num_rows == 0 and after == version + 1
    # until_version bounds the read
    bounded, until = read_samples_since(lake, None, until_version=written[0])
    assert until == written[0] and bounded.num_rows == 20
    middle, until = read_samples_since(lake, written[0], until_version=written[1])
    assert until == written[1] and _ids(middle) == sorted(
        sample(i)["sample_id"] for i in range(20, 35)
    )
    vacuum(lake, "samples", retention_hours=0)
    rows, _ = read_samples_since(lake, after)  # still works at the latest versions
    assert rows.num_rows == 0


def test_optimize_and_vacuum_concurrent_with_appends_lose_nothing(lake: LakeConfig) -> None:
    appender = DeltaAppender(lake, "samples")
    appender.refresh()  # creates the table before the maintenance loop starts
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for k in range(40):
                appender.append(_kafka_rows(range(k * 10, k * 10 + 10)),
                                offsets={("toolrec.samples", 0): k * 10 + 10})  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    rounds = 0
    while not stop.is_set() or rounds < 2:
        optimize(lake, "samples")
        vacuum(lake, "samples", retention_hours=0)
        rounds += 1
    thread.join()
    assert not errors
    table = read_table(lake, "samples")
    assert _ids(table) == sorted(sample(i)["sample_id"] for i in range(400))
    assert appender.recorded_offset(("toolrec.samples", 0)) == 400


def test_full_vacuum_refuses_a_retention_that_could_delete_in_flight_files(
    lake: LakeConfig,
) -> None:
    write_samples(lake, [sample(0)])
    with pytest.raises(LakeError, match="not committed yet"):
        vacuum(lake, "samples", retention_hours=0, full=True)


def test_lite_vacuum_keeps_files_no_commit_mentions_yet(lake: LakeConfig) -> None:
    write_samples(lake, [sample(0)])
    write_samples(lake, [sample(1)])
    part = next(Path(table_uri(lake, "samples")).glob("date=*/*.parquet"))
    in_flight = part.with_name("part-in-flight.parquet")
    in_flight.write_bytes(part.read_bytes())  # a sink's written-but-uncommitted file
    optimize(lake, "samples")
    deleted = vacuum(lake, "samples", retention_hours=0)
    assert len(deleted) == 2 and in_flight.exists()
    assert read_table(lake, "samples").num_rows == 2


def test_optimize_leaves_no_file_below_the_target_but_one_remainder_per_date(
    lake: LakeConfig,
) -> None:
    """delta-rs bins by input size and merged files compress better, so one pass leaves
    files well below the target; `optimize` merges again until at most one is."""
    appender = DeltaAppender(lake, "samples")
    for batch in range(40):  # 40 small files per date, like a sink's commits
        buffer = RowBuffer(spec_of("samples"))
        for i in range(batch * 500, batch * 500 + 500):
            row = sample(i, day=i % 2) | {"prompt": f"prompt {i} " * 20}
            buffer.add_model(Sample.model_validate(row), raw=None, source=None)
        appender.append(buffer.to_table(ingest_ts=T0))
    target = 64 * 1024
    metrics = optimize(lake, "samples", target_size=target)
    actions = pa.table(DeltaAppender(lake, "samples").table.get_add_actions(flatten=True))
    by_date: dict[str, list[int]] = {}
    for date, size in zip(actions.column("partition.date").to_pylist(),
                          actions.column("size_bytes").to_pylist(), strict=True):  # fmt: skip
        by_date.setdefault(date, []).append(size)
    assert len(by_date) == 2 and metrics["passes"] >= 2, metrics
    for date, sizes in by_date.items():
        assert len(sizes) >= 3, (date, sizes)  # enough data for several full files
        below = [s for s in sizes if s < target]
        assert len(below) <= 1, (date, sorted(sizes), target)  # the remainder at most
        assert max(sizes) <= 2 * target, (date, sorted(sizes))  # bins of twice the target
    assert read_table(lake, "samples", columns=["sample_id"]).num_rows == 20_000
