"""The Kafka → Delta sink against a real tansu broker and real Delta tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import lakehouse.sink
from lakehouse import read_samples_since, read_table, table_version
from lakehouse.config import LakeConfig
from lakehouse.maintenance import optimize, vacuum
from lakehouse.sink import CommitInfo, SinkStats, _Buffer, run_sink
from lakehouse.writer import DeltaAppender
from tests.lakehouse.helpers import (
    consume,
    feedback,
    group_offsets,
    impression,
    produce,
    sample,
    wait_until,
)
from toolrec.kafka import KafkaConfig

EXTRA = {"date", "source_topic", "source_partition", "source_offset", "source_timestamp",
         "ingest_ts", "batch_id"}  # fmt: skip


def _lake(tmp_path: Path, **overrides: Any) -> LakeConfig:
    settings = {"batch_max_rows": 64, "batch_max_seconds": 0.2, "group_id": None} | overrides
    return LakeConfig(root=str(tmp_path / "lake"), **settings)


@contextmanager
def sink_thread(lake: LakeConfig, kafka: KafkaConfig, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Run the sink in a thread; on exit stop it (flush) and re-raise its failure."""
    stop = threading.Event()
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["stats"] = run_sink(lake, kafka, stop_event=stop, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the sink did not stop within 30 s"
    if "error" in out:
        raise out["error"]


def _count(lake: LakeConfig, name: str) -> int:
    return 0 if table_version(lake, name) is None else read_table(lake, name, columns=[
        "source_offset"]).num_rows  # fmt: skip


def _end_offsets(coords: list[tuple[int, int]]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for partition, offset in coords:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


def _assert_samples_exactly(lake: LakeConfig, indices: range) -> None:
    rows = read_table(lake, "samples").to_pylist()
    counts = Counter(r["sample_id"] for r in rows)
    assert max(counts.values()) == 1, counts.most_common(3)
    by_id = {r["sample_id"]: {k: v for k, v in r.items() if k not in EXTRA} for r in rows}
    expected = {sample(i)["sample_id"]: sample(i) for i in indices}
    assert by_id == expected


# The fast path parses samples in chunks (`_FAST_PATH_CHUNK`) and the rest at the flush:
# the default parses these few hundred at the flush, 37 mid-stream runs across partitions.
@pytest.mark.parametrize("chunk", [None, 37])
def test_sink_writes_each_sample_once_and_dead_letters_garbage(
    kafka: KafkaConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int | None
) -> None:
    if chunk is not None:
        monkeypatch.setattr(lakehouse.sink, "_FAST_PATH_CHUNK", chunk)
    lake = _lake(tmp_path, max_record_bytes=2048)
    topics = kafka.topics
    garbage = [
        (b"{not json", "malformed_json", "<event>"),
        ({k: v for k, v in sample(900).items() if k != "weight"}, "missing_field", "weight"),
        (sample(901) | {"position": "first"}, "invalid_field", "position"),
        (impression(902), "unexpected_schema", "schema"),
        (sample(903) | {"prompt": "x" * 3000}, "oversized", "<event>"),
        (None, "malformed_json", "<event>"),
    ]
    good = [sample(i) for i in range(200)]
    samples_coords = produce(
        kafka, topics.samples, good[:100] + [g[0] for g in garbage] + good[100:] + good[:20]
    )  # fmt: skip  (20 re-emitted duplicates)
    events_coords = produce(kafka, topics.impressions, [impression(i) for i in range(50)])
    events_coords += produce(kafka, topics.feedback, [feedback(i) for i in range(50)]
                             + [b"[]", feedback(3)])  # fmt: skip

    with sink_thread(lake, kafka) as out:
        wait_until(lambda: _count(lake, "samples") >= 200 and _count(lake, "events") >= 100,
                   what="all good rows")  # fmt: skip
        dlq = consume(kafka, topics.dlq, len(garbage) + 1)
    stats: SinkStats = out["stats"]

    _assert_samples_exactly(lake, range(200))
    # every row carries the coordinates it was read from (the fast path parses several
    # partitions' records in one call and must hand each row its own); 0-19 were sent twice
    sent = samples_coords[:100] + samples_coords[100 + len(garbage):]
    where = {sample(i)["sample_id"]: {sent[i], sent[200 + i] if i < 20 else sent[i]}
             for i in range(200)}  # fmt: skip
    for row in read_table(lake, "samples").to_pylist():
        assert (row["source_partition"], row["source_offset"]) in where[row["sample_id"]]
    events = read_table(lake, "events")
    assert sorted(events.column("event_id").to_pylist()) == sorted(
        [f"imp-{i}" for i in range(50)] + [f"fb-{i}" for i in range(50)])  # fmt: skip
    assert (stats.rows_total, stats.duplicates, stats.dlq) == (300, 21, len(garbage) + 1)

    reasons = [{k: v.decode() for k, v in r.headers} for r in dlq]
    got = sorted((h["source_topic"], h["reason"], h["field"]) for h in reasons)
    want = sorted([(topics.samples, reason, field) for _, reason, field in garbage]
                  + [(topics.feedback, "malformed_json", "<event>")])  # fmt: skip
    assert got == want
    by_offset = {(h["source_topic"], int(h["source_partition"]), int(h["source_offset"])): r
                 for h, r in zip(reasons, dlq, strict=True)}  # fmt: skip
    first_bad = samples_coords[100]
    assert by_offset[(topics.samples, *first_bad)].value == b"{not json"  # raw bytes unchanged

    # every partition's progress is recorded in the same commits as the rows
    appender = DeltaAppender(lake, "samples")
    for partition, end in _end_offsets(samples_coords).items():
        assert appender.recorded_offset((topics.samples, partition)) == end
    events_appender = DeltaAppender(lake, "events")
    fb_ends = _end_offsets(events_coords[50:])
    for partition, end in fb_ends.items():
        assert events_appender.recorded_offset((topics.feedback, partition)) == end


def test_restart_resumes_from_the_offsets_recorded_in_delta(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    lake = _lake(tmp_path, group_id=f"lake-test-{uuid.uuid4().hex[:8]}")
    coords = produce(kafka, kafka.topics.samples, [sample(i) for i in range(100)])
    first = run_sink(lake, kafka, tables=["samples"], idle_exit_s=1.0)
    # the group's offsets follow the Delta commits (for lag dashboards; resuming ignores them)
    assert group_offsets(kafka, lake.group_id or "", kafka.topics.samples) == _end_offsets(coords)
    produce(kafka, kafka.topics.samples, [sample(i) for i in range(100, 150)])
    second = run_sink(lake, kafka, tables=["samples"], idle_exit_s=1.0)
    assert (first.records, second.records) == (100, 50)  # nothing re-read
    assert second.duplicates == 0 and second.replayed == 0
    _assert_samples_exactly(lake, range(150))

    # replaying the whole topic under a new transaction id is still harmless: sample ids
    replay = run_sink(lake.model_copy(update={"sink_app_id": "other"}), kafka,
                      tables=["samples"], idle_exit_s=1.0)  # fmt: skip
    assert (replay.records, replay.rows_total, replay.duplicates) == (150, 0, 150)
    _assert_samples_exactly(lake, range(150))


def _spawn_sink(kafka: KafkaConfig, lake: LakeConfig, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "TOOLREC_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "TOOLREC_LAKE__ROOT": lake.root,
        "TOOLREC_LAKE__BATCH_MAX_ROWS": str(lake.batch_max_rows),
        "TOOLREC_LAKE__BATCH_MAX_SECONDS": str(lake.batch_max_seconds),
    }
    env.pop("TOOLREC_CONFIG", None)
    toolrec = Path(sys.executable).with_name("toolrec")
    handle = log.open("ab")
    return subprocess.Popen([str(toolrec), "lake", "sink"], env=env, stdout=handle,
                            stderr=subprocess.STDOUT, cwd=log.parent)  # fmt: skip


@contextmanager
def sink_process(kafka: KafkaConfig, lake: LakeConfig, log: Path
                 ) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    process = _spawn_sink(kafka, lake, log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_sink_killed_mid_stream_restarts_with_each_sample_exactly_once(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    lake = _lake(tmp_path, batch_max_rows=100, batch_max_seconds=0.5)
    log = tmp_path / "sink.log"
    produce(kafka, kafka.topics.samples, [sample(i) for i in range(3000)])

    with sink_process(kafka, lake, log) as process:
        wait_until(lambda: (table_version(lake, "samples") or 0) >= 4, what="a few commits")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    at_kill = _count(lake, "samples")
    assert 0 < at_kill < 3000, f"the kill was not mid-stream ({at_kill} rows)"

    # more traffic while the sink is down, including samples re-emitted at new offsets
    later = [sample(i) for i in range(3000, 4000)] + [sample(i) for i in range(0, 3000, 10)]
    produce(kafka, kafka.topics.samples, later)
    with sink_process(kafka, lake, log) as process:
        wait_until(lambda: _count(lake, "samples") >= 4000, what="all samples after restart")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text()[-2000:]
    _assert_samples_exactly(lake, range(4000))


def test_sigterm_flushes_the_open_batch(kafka: KafkaConfig, tmp_path: Path) -> None:
    lake = _lake(tmp_path, batch_max_rows=100_000, batch_max_seconds=600)  # never due by itself
    log = tmp_path / "sink.log"
    coords = produce(kafka, kafka.topics.samples, [sample(i) for i in range(300)])
    with sink_process(kafka, lake, log) as process:
        wait_until(lambda: "consuming (first records" in log.read_text(), what="consumption")
        time.sleep(0.5)
        assert _count(lake, "samples") == 0  # consumed, nothing committed yet
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text()[-2000:]
    # what was consumed before SIGTERM is committed, exactly up to the recorded offsets
    rows = read_table(lake, "samples", columns=["source_partition", "source_offset"])
    written = set(zip(*(rows.column(c).to_pylist() for c in rows.column_names), strict=True))
    appender = DeltaAppender(lake, "samples")
    recorded = {p: appender.recorded_offset((kafka.topics.samples, p)) or 0 for p, _ in coords}
    assert written and written == {(p, o) for p, o in coords if o < recorded[p]}
    run_sink(lake, kafka, tables=["samples"], idle_exit_s=1.0)  # the rest, after a restart
    _assert_samples_exactly(lake, range(300))


def test_optimize_vacuum_and_incremental_reads_while_the_sink_runs(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    lake = _lake(tmp_path, batch_max_rows=50, batch_max_seconds=0.05)
    produce(kafka, kafka.topics.samples, [sample(i) for i in range(1500)])
    seen: list[str] = []
    version: int | None = None
    rounds = 0
    with sink_thread(lake, kafka, tables=["samples"]):
        wait_until(lambda: table_version(lake, "samples") is not None, what="the table")
        while _count(lake, "samples") < 1500 or rounds < 3:
            optimize(lake, "samples")
            vacuum(lake, "samples", retention_hours=0)
            rows, version = read_samples_since(lake, version)
            seen += rows.column("sample_id").to_pylist()
            rounds += 1
    rows, version = read_samples_since(lake, version)
    seen += rows.column("sample_id").to_pylist()
    assert len(seen) == len(set(seen)) == 1500  # the incremental reads partition the table
    _assert_samples_exactly(lake, range(1500))
    operations = Counter(h["operation"] for h in DeltaAppender(lake, "samples").table.history())
    assert operations["OPTIMIZE"] >= 1 and operations["WRITE"] > 10


def test_a_sink_per_table_writes_only_its_table(kafka: KafkaConfig, tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    produce(kafka, kafka.topics.feedback, [feedback(i) for i in range(30)])
    produce(kafka, kafka.topics.samples, [sample(i) for i in range(30)])
    stats = run_sink(lake, kafka, tables=["events"], idle_exit_s=1.0)
    assert stats.rows == {"samples": 0, "events": 30}
    assert table_version(lake, "samples") is None  # not this sink's table


def test_a_recreated_topic_stops_the_sink_until_its_app_id_changes(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    """Offsets below the recorded ones mean a new log: fail loudly, never drop as replays."""
    from infra.broker import LocalStack
    from infra.topics import ensure_topics
    from toolrec.errors import LakeError

    lake = _lake(tmp_path)
    produce(kafka, kafka.topics.samples, [sample(i) for i in range(40)])
    run_sink(lake, kafka, tables=["samples"], idle_exit_s=1.0)
    # The same topics recreated (a fresh broker: every offset starts at 0 again), fewer records.
    with LocalStack(tmp_path / "recreated", storage="memory") as stack:
        recreated = stack.kafka_config()
        ensure_topics(recreated)
        produce(recreated, recreated.topics.samples, [sample(i) for i in range(40, 50)])
        try:
            run_sink(lake, recreated, tables=["samples"], idle_exit_s=2.0)
        except LakeError as exc:
            assert "recreated" in str(exc) and "lake.sink_app_id" in str(exc)
        else:
            raise AssertionError("the sink dropped a recreated topic's records silently")
        _assert_samples_exactly(lake, range(40))  # nothing written
        fresh = lake.model_copy(update={"sink_app_id": "after-recreation"})
        stats = run_sink(fresh, recreated, tables=["samples"], idle_exit_s=1.0)
    assert (stats.rows_total, stats.replayed) == (10, 0)
    _assert_samples_exactly(lake, range(50))


def test_by_default_a_live_batch_waits_at_most_a_second() -> None:
    """A stream of a few thousand rows/s fills a batch's rows slower than its time bound,
    so the default bound is the longest a live row (a click's sample) waits in the sink
    before its commit starts (issue 12: it was 2 s of a 5 s click → Delta budget)."""
    config, buffer = LakeConfig(), _Buffer("samples")
    buffer.records, buffer.first_at = config.batch_max_rows // 2, 1000.0
    assert not buffer.due(config, 1000.0 + 0.9)
    assert buffer.due(config, 1000.0 + 1.0)


def test_a_batch_is_bounded_by_records_bytes_and_time(kafka: KafkaConfig, tmp_path: Path) -> None:
    """`batch_max_rows` and `batch_max_bytes` bound every commit exactly (records that do
    not fit wait for the next batch); `batch_max_seconds` flushes a batch that never fills."""
    produce(kafka, kafka.topics.samples, [sample(i) for i in range(400)])
    size = len(json.dumps(sample(0)).encode())
    for bound in ({"batch_max_rows": 50}, {"batch_max_bytes": 10 * size}):
        lake = _lake(tmp_path / next(iter(bound)), batch_max_seconds=600, **bound)
        commits: list[CommitInfo] = []
        run_sink(lake, kafka, tables=["samples"], idle_exit_s=1.0, on_commit=commits.append)
        assert sum(c.rows for c in commits) == 400
        assert all(c.records <= lake.batch_max_rows for c in commits), commits
        assert all(c.bytes <= lake.batch_max_bytes for c in commits), commits
        per = min(lake.batch_max_rows, lake.batch_max_bytes // size)  # sample(0) is smallest
        assert len(commits) >= 400 // per, len(commits)  # batches fill up to the bound
        _assert_samples_exactly(lake, range(400))

    lake = _lake(tmp_path / "time", batch_max_rows=100_000, batch_max_seconds=0.3)
    with sink_thread(lake, kafka, tables=["samples"]):
        wait_until(lambda: _count(lake, "samples") == 400, what="a time-bound flush",
                   timeout_s=10)  # fmt: skip
