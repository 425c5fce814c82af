"""Create the project's topics (idempotently) on any Kafka-compatible cluster.

Impressions, feedback and samples must be co-partitioned (same partition count, keyed by
the pseudonymous user id) so one user's events meet in one Faust worker.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from toolrec.errors import InfraError
from toolrec.kafka import KafkaConfig

log = logging.getLogger(__name__)


def ensure_topics(
    kafka: KafkaConfig, names: Iterable[str] | None = None, *, timeout_s: float = 30.0,
    compacted: Iterable[str] = (),
) -> dict[str, int]:
    """Create missing topics with `kafka.partitions`; return {topic: partition count}.
    Topics in `compacted` are created with cleanup.policy=compact (state changelogs: the
    latest record of every key must outlive any retention time).

    Raises InfraError if an existing co-partitioned topic has another partition count.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(names or kafka.topics.all())
    admin = _admin(KafkaAdminClient, kafka, timeout_s)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            compact = set(compacted)
            new = [NewTopic(t, kafka.partitions, kafka.replication_factor,
                            topic_configs={"cleanup.policy": "compact"} if t in compact else {})
                   for t in missing]
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                admin.create_topics(new)
            log.info("created topics %s with %d partitions", missing, kafka.partitions)
        counts = _partition_counts(admin, wanted, timeout_s)
    finally:
        admin.close()
    _check_copartitioned(kafka, counts)
    return counts


def _admin(cls: type, kafka: KafkaConfig, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return cls(**kafka.client_kwargs(), request_timeout_ms=int(timeout_s * 1000))
        except Exception as exc:  # NoBrokersAvailable while a fresh broker starts
            if time.monotonic() > deadline:
                raise InfraError(
                    f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}; start the local "
                    "broker (`toolrec infra broker up`) or set kafka.bootstrap_servers"
                ) from exc
            time.sleep(0.2)


def _partition_counts(admin: Any, topics: list[str], timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        described = admin.describe_topics(topics)
        counts = {d["name"]: len(d["partitions"]) for d in described if d.get("partitions")}
        if len(counts) == len(topics) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def _check_copartitioned(kafka: KafkaConfig, counts: dict[str, int]) -> None:
    keyed = [kafka.topics.impressions, kafka.topics.feedback, kafka.topics.samples]
    found = {t: counts[t] for t in keyed if t in counts}
    if len(set(found.values())) > 1:
        raise InfraError(
            f"topics {found} must have the same partition count (co-partitioned by user); "
            "recreate them or set kafka.partitions to match"
        )
