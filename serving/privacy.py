"""Forget a user everywhere this deployment keeps data about them, in one call used by both
`toolrec privacy forget USER_ID` and `POST /v1/admin/forget`.

- Delta tables with a `user_id` (events, samples): DELETE, vacuum at 0 h, an audit row
  (pseudonym + time) — `lakehouse.forget_user`; at once, older versions lose their files;
- the serving spool: `Spool.forget` rewrites the records as erased, never sent; at once;
- the stream state (Faust table changelogs `<streams.app_id>-*-changelog`): a tombstone
  (null value) for every key holding the pseudonym; a worker drops the key when it rebuilds
  its table from the changelog (restart or rebalance), and compaction removes the old
  records. A running worker keeps its in-memory copy until then: restart the workers after
  a forget (the stream stage can also call `tombstone_state` itself).

What this does NOT erase (`NOT_ERASED`, returned with every answer): models already trained
on the rows (their weights cannot unlearn a user: retrain from the erased tables — the next
scheduled refresh does — and retire older versions); records still inside the retention of
the raw Kafka topics (impressions, feedback, samples, dlq: bounded by the topics'
`retention.ms`); copies outside the lake (exports, trainer datasets under the artifact
directory, backups).

May import: `contracts`, `lakehouse` (public exports), `serving.spool`, `toolrec` core.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kafka.errors import KafkaError

from contracts.events import pseudonymize
from serving.spool import Spool

if TYPE_CHECKING:
    from toolrec.config import Settings
    from toolrec.kafka import KafkaConfig

__all__ = ["NOT_ERASED", "forget", "tombstone_state"]

log = logging.getLogger(__name__)

NOT_ERASED = [
    "models already trained on the user's rows (retrain from the erased tables and retire "
    "older versions)",
    "records still within the retention of the raw Kafka topics (impressions, feedback, "
    "samples, dlq)",
    "copies outside the lake (exports, trainer datasets in the artifact directory, backups)",
]


def forget(settings: Settings, user_id: str, key: bytes, *,
           spool: Spool | None = None, state: bool = True) -> dict[str, Any]:
    """Erase `user_id` (raw, or its verified pseudonym) from the lake, the spool (the open
    `spool`, else `serving.spool_dir` if no server holds it) and, with `state`, the stream
    state's changelogs. Returns {pseudonym, removed: {store: count}, not_erased}."""
    from lakehouse import forget_user

    pseudonym = pseudonymize(user_id, key)
    removed: dict[str, int] = dict(forget_user(settings.lake, pseudonym))
    removed["spool"] = _forget_in_spool(settings, pseudonym, spool)
    not_erased = list(NOT_ERASED)
    if state:
        try:
            removed["stream_state_tombstones"] = tombstone_state(
                settings.kafka, settings.streams.app_id, pseudonym)
        except KafkaError as exc:  # the lake and spool are done: say what is left, plainly
            log.error("forget %s: stream state not reached: %s", pseudonym, exc)
            not_erased.insert(0, f"the stream state: the broker was unreachable ({exc!r}); "
                              "run the forget again when it is up")
    return {"pseudonym": pseudonym, "removed": removed, "not_erased": not_erased}


def _forget_in_spool(settings: Settings, pseudonym: str, spool: Spool | None) -> int:
    if spool is not None:
        return spool.forget(pseudonym)
    directory = settings.serving.spool_dir
    if not directory.exists():
        return 0
    own = Spool(directory, segment_bytes=settings.serving.spool_segment_bytes,
                fsync=settings.serving.spool_fsync)  # SpoolError if a server holds it
    try:
        return own.forget(pseudonym)
    finally:
        own.close()


def tombstone_state(kafka: KafkaConfig, app_id: str, pseudonym: str, *,
                    timeout_s: float = 30.0) -> int:
    """Write a tombstone to every `<app_id>-*-changelog` topic for each key there that
    contains `pseudonym`; returns how many. Independent of the table's key layout (a user
    key, or user:request keys). Raises KafkaError types if the broker is unreachable."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    consumer = KafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False,
                             group_id=None, auto_offset_reset="earliest")
    try:
        topics = sorted(t for t in consumer.topics()
                        if t.startswith(f"{app_id}-") and t.endswith("-changelog"))
        keys = _keys_with(consumer, topics, pseudonym.encode(), timeout_s, TopicPartition)
    finally:
        consumer.close()
    if not keys:
        return 0
    producer = KafkaProducer(**kafka.client_kwargs(), acks="all")
    try:
        for topic, partition, key in keys:
            producer.send(topic, key=key, value=None, partition=partition)
        producer.flush(timeout=timeout_s)
    finally:
        producer.close()
    log.info("forget: %d state tombstones written", len(keys))
    return len(keys)


def _keys_with(consumer: Any, topics: list[str], needle: bytes, timeout_s: float,
               tp_type: Any) -> set[tuple[str, int, bytes]]:
    """(topic, partition, key) of the live keys containing `needle` (a key whose latest
    record is already a tombstone is skipped)."""
    import time

    tps = [tp_type(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
    if not tps:
        return set()
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    latest: dict[tuple[str, int, bytes], bool] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            for message in batch:
                if message.key is not None and needle in message.key:
                    latest[(message.topic, message.partition, message.key)] = \
                        message.value is not None
        marks = [consumer.highwater(tp) for tp in tps]
        if all(m is not None and consumer.position(tp) >= m for tp, m in zip(tps, marks,
                                                                           strict=True)):
            break
    return {k for k, live in latest.items() if live}
