"""Builders and Kafka helpers shared by the lakehouse tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from contracts.events import FEEDBACK_SCHEMA, IMPRESSION_SCHEMA, SAMPLE_SCHEMA
from toolrec.kafka import KafkaConfig

DAY_MS = 86_400_000
T0 = 1_760_000_000_000  # 2025-10-09 UTC


def sample(i: int, *, day: int = 0, clicked: bool | None = None) -> dict[str, Any]:
    """A valid `sample/1` payload whose fields all derive from `i` (content is checkable)."""
    request = f"req-{i // 3}"
    position = i % 3 + 1
    click = (i % 4 == 0) if clicked is None else clicked
    return {
        "schema": SAMPLE_SCHEMA,
        "sample_id": f"{request}:{position}",
        "request_id": request,
        "event_id": f"imp-{i // 3}",
        "user_id": f"p_user{i % 7}",
        "session_id": f"s{i % 5}",
        "impression_ts": T0 + day * DAY_MS + i,
        "closed_ts": T0 + day * DAY_MS + i + 600_000,
        "model_version": "m1",
        "template_version": "t1",
        "prompt": f"prompt for request {i // 3}",
        "completion": f"suggestion {i}",
        "position": position,
        "n_shown": 3,
        "clicked": click,
        "executed": False,
        "explored": i % 11 == 0,
        "tool_id": f"tool.{i % 13}" if i % 2 else None,
        "is_tool_query": bool(i % 2),
        "user_impressions": float(i % 17),
        "user_clicks": float(i % 5),
        "user_ctr": 0.1,
        "global_ctr": 0.12,
        "w_activity": 1.0 + (i % 3) / 10,
        "w_tool": 2.0 if click and i % 2 else 1.0,
        "w_position": 1.0,
        "weight": 1.5,
    }


def impression(i: int) -> dict[str, Any]:
    return {
        "schema": IMPRESSION_SCHEMA,
        "event_id": f"imp-{i}",
        "request_id": f"req-{i}",
        "user_id": f"p_user{i % 7}",
        "session_id": "s1",
        "ts": T0 + i,
        "model_version": "m1",
        "template_version": "t1",
        "prompt": "p",
        "query": "q",
        "context": {},
        "suggestions": [{"position": 1, "text": "turn on wifi", "tool_id": "wifi.on"}],
        "decoding": {"temperature": 0.7},
    }


def feedback(i: int) -> dict[str, Any]:
    return {
        "schema": FEEDBACK_SCHEMA,
        "event_id": f"fb-{i}",
        "request_id": f"req-{i}",
        "user_id": f"p_user{i % 7}",
        "ts": T0 + i + 1000,
        "type": "click",
        "position": 1,
        "success": None,
    }


def encode(payload: dict[str, Any] | bytes | None) -> bytes | None:
    if payload is None or isinstance(payload, bytes):
        return payload
    return json.dumps(payload).encode()


async def _produce(
    kafka: KafkaConfig, topic: str, values: Sequence[dict[str, Any] | bytes]
) -> list[tuple[int, int]]:
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for value in values:
            key = value["user_id"].encode() if isinstance(value, dict) else b"p_user0"
            futures.append(await producer.send(topic, encode(value), key=key))
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metadata]


def produce(
    kafka: KafkaConfig, topic: str, values: Iterable[dict[str, Any] | bytes]
) -> list[tuple[int, int]]:
    """Produce `values` (dicts are JSON-encoded, keyed by user id); returns (partition, offset)."""
    return asyncio.run(_produce(kafka, topic, list(values)))


async def _consume(kafka: KafkaConfig, topic: str, count: int, timeout_s: float) -> list[Any]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(records) < count and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def consume(kafka: KafkaConfig, topic: str, count: int, *, timeout_s: float = 20.0) -> list[Any]:
    """At least `count` records of `topic` from the beginning (fewer after `timeout_s`)."""
    return asyncio.run(_consume(kafka, topic, count, timeout_s))


def wait_until(
    predicate: Any, *, timeout_s: float = 30.0, interval_s: float = 0.02, what: str = "condition"
) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


async def _group_offsets(kafka: KafkaConfig, group: str, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        offsets = {}
        for partition in sorted(consumer.partitions_for_topic(topic)):
            committed = await consumer.committed(TopicPartition(topic, partition))
            if committed is not None:
                offsets[partition] = committed
        return offsets
    finally:
        await consumer.stop()


def group_offsets(kafka: KafkaConfig, group: str, topic: str) -> dict[int, int]:
    """Offsets consumer group `group` committed on `topic` (partitions without any omitted)."""
    return asyncio.run(_group_offsets(kafka, group, topic))
