"""Helpers of the hostile-input tests: raw events, DLQ reasons, the changelog, probe counts."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from kafka.partitioner.default import murmur2

from contracts.events import FEEDBACK_SCHEMA
from tests.streams.conftest import read_topic
from toolrec.kafka import KafkaConfig

YEAR_2100_MS = 4_102_444_800_000
FAR_FUTURE_MS = 99_999_999_999_999  # the flood's ts, as the issue sent it


def now_ms() -> int:
    return int(time.time() * 1000)


def raw_feedback(user: str, request_id: str, ts: int, position: int = 1,
                 type: str = "click") -> bytes:
    """A feedback event as serving's POST /v1/feedback publishes it (contract-valid)."""
    return json.dumps({
        "schema": FEEDBACK_SCHEMA, "event_id": f"f-{user}-{request_id}-{position}-{ts}",
        "request_id": request_id, "user_id": user, "ts": ts, "type": type,
        "position": position, "success": None,
    }).encode()


def partition_of(kafka: KafkaConfig, user: str) -> int:
    """Kafka's default partitioner (murmur2 of the key), as every producer here uses."""
    return (murmur2(user.encode()) & 0x7FFFFFFF) % kafka.partitions


def users_on_one_partition(kafka: KafkaConfig, prefix: str, n: int = 2) -> list[str]:
    """`n` user ids whose events land on the same partition (so one worker sees both)."""
    by_partition: dict[int, list[str]] = {}
    for i in range(1000):
        user = f"{prefix}{i}"
        same = by_partition.setdefault(partition_of(kafka, user), [])
        same.append(user)
        if len(same) == n:
            return same
    raise AssertionError("no partition got two users")


def dead_letters(kafka: KafkaConfig, at_least: int, timeout_s: float = 90) -> list[Any]:
    return read_topic(kafka, kafka.topics.dlq, until=lambda m: len(m) >= at_least,
                      timeout_s=timeout_s)


def reasons(messages: list[Any]) -> Counter[str]:
    return Counter(dict(m.headers)["reason"].decode() for m in messages)


def header(message: Any, name: str) -> str:
    return str(dict(message.headers)[name].decode())


def changelog_sizes(kafka: KafkaConfig, app_id: str, key_part: str) -> list[int]:
    """Sizes of the table's changelog records whose key contains `key_part`."""
    messages = read_topic(kafka, f"{app_id}-state-changelog", until=lambda m: False,
                          timeout_s=3, strict=False)
    return [len(m.value or b"") for m in messages if key_part.encode() in (m.key or b"")]


def probe_line(name: str, *, tried: int, landed: int, dead_lettered: int) -> str:
    """One line of the closing note: lost = tried − landed − dead-lettered."""
    line = (f"PROBE {name}: tried={tried} landed={landed} dead_lettered={dead_lettered} "
            f"lost={tried - landed - dead_lettered}")
    print(line)
    return line
