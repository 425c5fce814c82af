"""Sink throughput on a real broker against its ceiling, measured in the same run.

`python -m bench.sink [--rows N] [--events M]`, also `toolrec lake bench`.

A benchmark, not production code: it lives in `bench/` and runs from a source checkout.

Produces N synthetic samples (and, with `--events`, impressions + feedback as serving
writes them: pseudonymized ids) to throw-away topics, measures a bare aiokafka consumer
reading them (the ceiling), then the sink draining that backlog into a throw-away lake, and
prints one result per line: `sink_rows_per_s N` first, then the ceiling, their ratio, CPU
seconds per 10k rows, a per-stage CPU profile, and, after `optimize`, the size of the
compacted files against the target. Topics and lake are removed after.

Reuse from another benchmark: `measure_sink(lake, kafka, rows=…)` drains what is already
on `kafka.topics` into `lake` (a fresh root) and returns a `SinkBenchResult` whose
`lines()` start with `sink_rows_per_s N`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from contracts.events import FEEDBACK_SCHEMA, IMPRESSION_SCHEMA, SAMPLE_SCHEMA, pseudonymize
from lakehouse.config import LakeConfig
from lakehouse.maintenance import optimize
from lakehouse.sink import CommitInfo, Sink, TableName, cpu_profile
from lakehouse.tables import open_table
from toolrec.kafka import KafkaConfig, Topics

_T0 = 1_760_000_000_000
BENCH_KEY = b"toolrec-bench-sink-key-not-a-secret"  # pseudonyms of the synthetic events


def synthetic_sample(i: int, *, prompt_chars: int = 600) -> dict[str, Any]:
    """A valid `sample/1` payload of about 1 KB (the size the broker numbers assume)."""
    request, position = f"bench-{i // 3}", i % 3 + 1
    clicked = i % 7 == 0
    return {
        "schema": SAMPLE_SCHEMA, "sample_id": f"{request}:{position}", "request_id": request,
        "event_id": f"imp-{i // 3}", "user_id": f"p_{i % 997:032x}", "session_id": f"s{i % 50}",
        "impression_ts": _T0 + i, "closed_ts": _T0 + i + 600_000, "model_version": "m1",
        "template_version": "t1", "prompt": "p" * prompt_chars, "completion": f"suggestion {i}",
        "position": position, "n_shown": 3, "clicked": clicked, "executed": False,
        "explored": False, "tool_id": "tool.x" if i % 2 else None, "is_tool_query": bool(i % 2),
        "user_impressions": 3.0, "user_clicks": 1.0, "user_ctr": 0.1, "global_ctr": 0.1,
        "w_activity": 1.0, "w_tool": 2.0 if clicked and i % 2 else 1.0, "w_position": 1.0,
        "weight": 1.0,
    }  # fmt: skip


def synthetic_event(i: int, key: bytes = BENCH_KEY) -> dict[str, Any]:
    """Event `i`: an impression (≈ 1 KB, three suggestions) or, every fourth, the click on the
    previous one; ids pseudonymized with `key` as serving does (so the sink verifies them)."""
    n = i - i // 4  # impressions before this event
    user = pseudonymize(f"user-{n % 997}", key)
    request = pseudonymize(f"req-{n}", key)
    if i % 4 == 3:
        return {"schema": FEEDBACK_SCHEMA, "event_id": f"fb-{i}", "request_id": request,
                "user_id": user, "ts": _T0 + i, "type": "click", "position": 1 + i % 3,
                "success": None}  # fmt: skip
    return {
        "schema": IMPRESSION_SCHEMA, "event_id": f"imp-{i}", "request_id": request,
        "user_id": user, "session_id": pseudonymize(f"s{n % 50}", key), "ts": _T0 + i,
        "model_version": "m1", "template_version": "t1", "prompt": "context " * 70,
        "query": "my battery is low", "context": {"battery": 12},
        "suggestions": [{"position": k + 1, "text": f"suggestion {k}", "tool_id": None}
                        for k in range(3)],
        "decoding": {"temperature": 0.7, "explore": False},
    }  # fmt: skip


@dataclass(frozen=True)
class SinkBenchResult:
    rows: int
    sink_seconds: float
    sink_rows_per_s: float
    ceiling_msgs_per_s: float
    commits: int
    rows_per_commit: float
    files_per_commit: float
    commit_p50_s: float
    commit_p99_s: float
    cpu_s: float  # process CPU seconds of the sink run (all threads)
    stages: dict[str, float]  # CPU seconds per stage (SinkStats.cpu)
    rows_by_table: dict[str, int] = field(default_factory=dict)
    dedup_peak_keys: dict[str, int] = field(default_factory=dict)  # DeltaAppender.dedup_stats
    extra: list[str] = field(default_factory=list)  # further result lines (optimize)

    def lines(self) -> list[str]:
        ratio = self.sink_rows_per_s / self.ceiling_msgs_per_s if self.ceiling_msgs_per_s else 0
        per_10k = 10_000 / max(self.rows, 1)
        return [
            f"sink_rows_per_s {self.sink_rows_per_s:.0f}",
            f"ceiling_msgs_per_s {self.ceiling_msgs_per_s:.0f}",
            f"ratio {ratio:.2f}",
            f"rows {self.rows} {self.rows_by_table}  seconds {self.sink_seconds:.2f}",
            f"commits {self.commits}  rows/commit {self.rows_per_commit:.0f}  "
            f"files/commit {self.files_per_commit:.2f}",
            f"commit_p50_s {self.commit_p50_s:.3f}  commit_p99_s {self.commit_p99_s:.3f}",
            f"sink_cpu_s_per_10k_rows {self.cpu_s * per_10k:.3f}",
            f"sink_profile_cpu_s_per_10k_rows {cpu_profile(self.stages, self.rows)}"
            # the rest: aiokafka's record decoding outside `getmany`, Arrow's and delta-rs'
            # own threads (the JSON reader, parquet encoding), start-up
            + f"  unattributed={(self.cpu_s - sum(self.stages.values())) * per_10k:.3f}",
            f"dedup_cache_peak_keys {self.dedup_peak_keys}  (lake.dedup_cache_keys bounds each)",
            *self.extra,
        ]


async def _create(kafka: KafkaConfig, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        new = [NewTopic(t, kafka.partitions, kafka.replication_factor) for t in topics]
        await admin.create_topics(new)
    finally:
        await admin.close()


async def _delete(kafka: KafkaConfig, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        await admin.delete_topics(topics)
    except Exception:  # noqa: BLE001 - cleanup is best effort
        pass
    finally:
        await admin.close()


async def _produce(kafka: KafkaConfig, values: Sequence[tuple[str, dict[str, Any]]]) -> None:
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", linger_ms=20,
                                max_batch_size=256 * 1024)  # fmt: skip
    await producer.start()
    try:
        pending = []
        for topic, value in values:
            pending.append(await producer.send(topic, json.dumps(value).encode(),
                                               key=value["user_id"].encode()))  # fmt: skip
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def ceiling_rate(kafka: KafkaConfig, topics: list[str], rows: int) -> float:
    """Messages/s of a bare aiokafka consumer reading `rows` records of `topics` from the
    beginning: the ceiling any consumer of those topics is compared with."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024)  # fmt: skip
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for topic in topics
               for p in sorted(consumer.partitions_for_topic(topic))]  # fmt: skip
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, started = 0, time.perf_counter()
        while seen < rows:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            seen += sum(len(b) for b in batches.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def measure_sink(
    lake: LakeConfig,
    kafka: KafkaConfig,
    *,
    rows: int,
    tables: Sequence[TableName] = ("samples",),
    user_id_key: bytes | None = None,
    ceiling: bool = True,
) -> SinkBenchResult:
    """Drain the backlog of `rows` records already on the sink's topics of `tables` into
    `lake` (give it a fresh root) and measure it: wall from the sink's start to its last
    data commit, process CPU, per-stage CPU, and (`ceiling`) a bare consumer on the same
    topics first. The sink runs in this process and is stopped once it has consumed `rows`
    records (its stop flushes at once), so the time bound of the last, partial batch
    (`batch_max_seconds`, a live-traffic setting) is not counted."""
    topics = {"samples": [kafka.topics.samples],
              "events": [kafka.topics.impressions, kafka.topics.feedback]}  # fmt: skip
    names = [t for table in tables for t in topics[table]]
    top = asyncio.run(ceiling_rate(kafka, names, rows)) if ceiling else 0.0
    commits: list[CommitInfo] = []
    stop = threading.Event()
    sink = Sink(lake, kafka, tables=tables, stop_event=stop, on_commit=commits.append,
                idle_exit_s=30.0, user_id_key=user_id_key)  # fmt: skip
    started, cpu = time.time(), time.process_time()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(sink.run())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failure.append(exc)

    runner = threading.Thread(target=run, name="bench-sink")
    runner.start()
    while runner.is_alive() and sink.stats.records < rows:
        time.sleep(0.005)
    stop.set()  # the backlog is consumed: the stop flushes the open batches at once
    runner.join()
    cpu = time.process_time() - cpu
    stats = sink.stats
    if failure:
        raise failure[0]
    if stats.records < rows:
        raise RuntimeError(f"the sink stopped after {stats.records} of {rows} records")
    data = [c for c in commits if c.rows]
    elapsed = max(c.committed_at for c in data) - started if data else float("nan")
    seconds = sorted(c.seconds for c in data) or [0.0]
    return SinkBenchResult(
        rows=stats.rows_total,
        sink_seconds=elapsed,
        sink_rows_per_s=stats.rows_total / elapsed if data else 0.0,
        ceiling_msgs_per_s=top,
        commits=len(data),
        rows_per_commit=stats.rows_total / max(len(data), 1),
        files_per_commit=sum(c.files for c in data) / max(len(data), 1),
        commit_p50_s=statistics.median(seconds),
        commit_p99_s=seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))],
        cpu_s=cpu,
        stages=dict(stats.cpu),
        rows_by_table={k: v for k, v in stats.rows.items() if v},
        dedup_peak_keys={k: w.dedup_stats().peak_keys for k, w in sink.writers.items()},
    )


def optimize_lines(lake: LakeConfig, name: str, *, target_size: int) -> list[str]:
    """Compact `name` to `target_size` and report its files: per date partition, every
    file but the partition's remainder (the smallest) should be near the target."""
    before = open_table(lake, name).get_add_actions(flatten=True)
    optimize(lake, name, target_size=target_size)
    after = pa.table(open_table(lake, name).get_add_actions(flatten=True))
    sizes: dict[str, list[int]] = {}
    for date, size in zip(after.column("partition.date").to_pylist(),
                          after.column("size_bytes").to_pylist(), strict=True):  # fmt: skip
        sizes.setdefault(date, []).append(size)
    full = [s for group in sizes.values() for s in sorted(group)[1:]]  # all but remainders
    smallest = min(full) / target_size if full else float("nan")
    return [
        f"optimize_{name} target {target_size} B: files {before.num_rows} -> {after.num_rows} "
        f"in {len(sizes)} partitions; smallest non-remainder file {smallest:.2f}× target, "
        f"remainders {sorted(min(g) for g in sizes.values())} B",
    ]


def bench_sink(
    lake: LakeConfig,
    kafka: KafkaConfig,
    *,
    rows: int,
    events: int = 0,
    optimize_target: int | None = None,
) -> SinkBenchResult:
    """Measure the sink on `rows` synthetic samples and `events` impressions/feedback
    (throw-away topics and lake); with `optimize_target`, compact `samples` afterwards."""
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{name: f"bench.{name}.{suffix}" for name in Topics.model_fields})
    kafka = kafka.model_copy(update={"topics": topics})
    names = [topics.samples, topics.impressions, topics.feedback, topics.dlq]
    root = tempfile.mkdtemp(prefix="toolrec-lake-bench-")
    lake = lake.model_copy(update={"root": root, "group_id": None})
    tables: list[TableName] = ["samples"] if rows else []
    values = [(topics.samples, synthetic_sample(i)) for i in range(rows)]
    if events:
        tables.append("events")
        values += [(topics.feedback if i % 4 == 3 else topics.impressions, synthetic_event(i))
                   for i in range(events)]  # fmt: skip
    try:
        asyncio.run(_create(kafka, names))
        asyncio.run(_produce(kafka, values))
        result = measure_sink(lake, kafka, rows=rows + events, tables=tables,
                              user_id_key=BENCH_KEY if events else None)  # fmt: skip
        if optimize_target and rows:
            result.extra.extend(optimize_lines(lake, "samples", target_size=optimize_target))
    finally:
        asyncio.run(_delete(kafka, names))
        shutil.rmtree(root, ignore_errors=True)
    return result


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} {five:.2f} (1/5 min, 2 cores)"


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.sink`: a fresh local broker (or `--bootstrap`), then `bench_sink`."""
    from infra.broker import LocalStack

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="samples to produce")
    parser.add_argument("--events", type=int, default=0,
                        help="impressions + feedback to produce too (the sink's events table)")
    parser.add_argument("--optimize-target", type=int, default=1024 * 1024,
                        help="compact `samples` to this file size afterwards (0: skip)")
    parser.add_argument("--bootstrap", default=None,
                        help="an existing broker (host:port); default: start a local tansu")
    args = parser.parse_args(argv)
    lake = LakeConfig()
    print(_load(), flush=True)
    if args.bootstrap:
        kafka = KafkaConfig(bootstrap_servers=args.bootstrap)
        result = bench_sink(lake, kafka, rows=args.rows, events=args.events,
                            optimize_target=args.optimize_target)  # fmt: skip
    else:
        with LocalStack(Path(tempfile.mkdtemp(prefix="toolrec-bench-sink-"))) as stack:
            result = bench_sink(lake, stack.kafka_config(), rows=args.rows, events=args.events,
                                optimize_target=args.optimize_target)  # fmt: skip
    for line in result.lines():
        print(line, flush=True)
    print(_load(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
