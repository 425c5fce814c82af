"""Sink throughput on the configured broker (`toolrec lake bench`), with its ceiling.

A benchmark, not production code: it lives in `bench/` and runs from a source checkout.

Produces N synthetic samples to throw-away topics, measures a bare aiokafka consumer
reading them (the ceiling), then the sink writing them to a throw-away lake, and prints
`sink_rows_per_s`, `ceiling_msgs_per_s` and their ratio. Topics and lake are removed after.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from contracts.events import SAMPLE_SCHEMA
from lakehouse.config import LakeConfig
from lakehouse.sink import CommitInfo, run_sink
from toolrec.kafka import KafkaConfig, Topics

_T0 = 1_760_000_000_000


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

    def lines(self) -> list[str]:
        ratio = self.sink_rows_per_s / self.ceiling_msgs_per_s if self.ceiling_msgs_per_s else 0
        return [
            f"rows {self.rows}",
            f"sink_rows_per_s {self.sink_rows_per_s:.0f}",
            f"ceiling_msgs_per_s {self.ceiling_msgs_per_s:.0f}",
            f"ratio {ratio:.2f}",
            f"commits {self.commits}  rows/commit {self.rows_per_commit:.0f}  "
            f"files/commit {self.files_per_commit:.2f}",
            f"commit_p50_s {self.commit_p50_s:.3f}  commit_p99_s {self.commit_p99_s:.3f}",
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


async def _produce(kafka: KafkaConfig, topic: str, rows: int) -> None:
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", linger_ms=20,
                                max_batch_size=256 * 1024)  # fmt: skip
    await producer.start()
    try:
        pending = []
        for i in range(rows):
            value = synthetic_sample(i)
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


def bench_sink(lake: LakeConfig, kafka: KafkaConfig, *, rows: int) -> SinkBenchResult:
    """Measure the sink on `rows` synthetic samples (throw-away topics and lake)."""
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{name: f"bench.{name}.{suffix}" for name in Topics.model_fields})
    kafka = kafka.model_copy(update={"topics": topics})
    names = [topics.samples, topics.dlq]
    root = tempfile.mkdtemp(prefix="toolrec-lake-bench-")
    lake = lake.model_copy(update={"root": root, "group_id": None})
    try:
        asyncio.run(_create(kafka, names))
        asyncio.run(_produce(kafka, topics.samples, rows))
        ceiling = asyncio.run(ceiling_rate(kafka, [topics.samples], rows))
        commits: list[CommitInfo] = []
        started = time.time()
        stats = run_sink(lake, kafka, tables=["samples"], idle_exit_s=2.0,
                         on_commit=commits.append)  # fmt: skip
    finally:
        asyncio.run(_delete(kafka, names))
        shutil.rmtree(root, ignore_errors=True)
    data = [c for c in commits if c.rows]
    elapsed = max(c.committed_at for c in data) - started if data else float("nan")
    seconds = sorted(c.seconds for c in data) or [0.0]
    return SinkBenchResult(
        rows=stats.rows_total,
        sink_seconds=elapsed,
        sink_rows_per_s=stats.rows_total / elapsed if data else 0.0,
        ceiling_msgs_per_s=ceiling,
        commits=len(data),
        rows_per_commit=stats.rows_total / max(len(data), 1),
        files_per_commit=sum(c.files for c in data) / max(len(data), 1),
        commit_p50_s=statistics.median(seconds),
        commit_p99_s=seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))],
    )
