"""The Faust worker: impressions + feedback in, calibrated samples (and DLQ records) out.

One agent reads `toolrec.impressions`, `toolrec.feedback` and an internal ticks topic,
all co-partitioned by user, so every event of a user is handled in order by one worker.
The agent is thin; `Processor` routes events to the pure transitions of `streams.window`.

Guarantees (Faust runs at-least-once; tansu cannot do Kafka transactions, DESIGN.md §5d):
- one table holds all state, so one changelog partition orders every write of a source
  partition: a user's write surviving a crash implies the partition's earlier writes did;
- replayed events are recognised by the source offsets stored in the user's state;
- a window's samples are acknowledged by the broker *before* its state is updated, so a
  crash re-emits identical samples (same `sample_id`, same content) rather than losing
  them; the lake sink keeps one row per `sample_id`.
Windows close on event time. The watermark of a partition is the smaller of the largest
event times seen on its impressions and its feedback partition (the two are consumed
independently, so neither may run ahead for the other). A worker that has consumed
everything there is of a partition sends itself a tick with the wall clock every
`tick_interval_s`, which advances both, so idle partitions close too; while it catches up
(after a restart, a rebalance or a burst) it sends no ticks, so replayed events are judged
by their own times, never as late.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import faust
from faust.types import TP

from contracts.dlq import DeadLetter
from contracts.events import Feedback, Impression, Sample, parse_event
from streams.config import StreamsConfig
from streams.gaps import read_range, skipped_range
from streams.window import (
    GlobalState,
    Orphan,
    UserState,
    close,
    deadlines,
    expire_orphans,
    new_global_state,
    new_user_state,
    on_feedback,
    on_impression,
    release_orphans,
)
from toolrec.durable import now_ms
from toolrec.errors import ValidationError
from toolrec.kafka import KafkaConfig

log = logging.getLogger(__name__)

ERROR_OUTCOMES = {
    "duplicate_impression",
    "late_impression",
    "unknown_impression",
    "expired_impression",
    "position_not_shown",
}


# Topics whose keys and values we read and write as raw bytes (we validate ourselves).
RAW_BYTES: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


class Source(NamedTuple):
    """Where an event came from: enough to dead-letter it faithfully."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class ToolrecApp(faust.App):
    """A Faust app that knows its KafkaConfig (the tansu transport reads it)."""

    kafka_config: KafkaConfig


def ticks_topic_name(cfg: StreamsConfig) -> str:
    return f"{cfg.app_id}-ticks"


class Processor:
    """Routes one source event to the window transitions and writes the results."""

    def __init__(self, app: ToolrecApp, cfg: StreamsConfig, kafka: KafkaConfig) -> None:
        self.cfg = cfg
        self.kafka = kafka
        self.topics = kafka.topics
        # Keys u:<user>, g:<partition>, r:<request>; values JSON (the app's default codec).
        self.table = app.Table("state", default=None, partitions=kafka.partitions, key_type=str)
        self.samples = app.topic(kafka.topics.samples, **RAW_BYTES)
        self.dlq = app.topic(kafka.topics.dlq, **RAW_BYTES)
        self.seen: dict[int, dict[str, int]] = {}  # partition -> topic -> max event time
        self.positions: dict[tuple[str, int], int] = {}  # last offset handled
        self.committed: dict[tuple[str, int], int] = {}  # group offsets at assignment
        self.last_close: dict[int, float] = {}  # partition -> monotonic time of last batch
        self.deadlines: dict[int, list[tuple[int, str, str]]] = {}  # partition -> heap
        self.stats: Counter[str] = Counter()
        self._dead_letters: list[Any] = []  # sends of the current event, awaited in handle
        self._last_report = (time.monotonic(), 0)

    # -- entry point ---------------------------------------------------------------------
    async def handle(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        self._ensure_index(partition)
        if topic in (self.topics.impressions, self.topics.feedback):
            for record in await self._skipped_records(topic, partition, offset):
                self._process(Source(topic, partition, record.offset, record.key, record.value))
            self._process(Source(topic, partition, offset, key, value))
        else:  # a tick: wall-clock progress for idle partitions
            tick = int(json.loads(value or b"{}").get("ts", 0))
            self._advance(partition, tick, self.topics.impressions, self.topics.feedback)
        await self._close_due(partition)
        for send in self._dead_letters:
            await send
        self._dead_letters.clear()

    def _process(self, source: Source) -> None:
        self.positions[(source.topic, source.partition)] = source.offset
        self.stats["events"] += 1
        event = self._validate(source)
        if event is not None:
            self._advance(source.partition, event.ts, source.topic)
            self._apply(event, source)

    async def _skipped_records(self, topic: str, partition: int, offset: int) -> list[Any]:
        """Records of this partition before `offset` that Faust never handed over
        (`streams.gaps`), read back from the broker."""
        key = (topic, partition)
        if key not in self.positions and key not in self.committed:
            found = await asyncio.to_thread(
                committed_offsets, self.kafka, self.cfg.app_id, {partition}
            )
            self.committed.update(found or {})
        missing = skipped_range(self.positions.get(key), self.committed.get(key), offset)
        if not missing:
            return []
        records = await read_range(self.kafka.client_kwargs(), topic, partition, missing)
        self.stats["skipped_reread"] += len(records)
        log.warning(
            "%s[%d]: offsets %d..%d were never handed to the worker; re-read %d records",
            topic, partition, missing.start, missing.stop - 1, len(records),
        )
        return records

    # -- validation and application ------------------------------------------------------
    def _validate(self, source: Source) -> Impression | Feedback | None:
        try:
            expected = Impression if source.topic == self.topics.impressions else Feedback
            event = parse_event(
                source.value or b"", max_bytes=self.cfg.max_event_bytes, expected=expected
            )
            if not isinstance(event, expected):
                raise ValidationError(
                    "schema", "wrong_topic", f"{type(event).__name__} event on topic {source.topic}"
                )
            if isinstance(event, Impression) and len(event.suggestions) > self.cfg.max_suggestions:
                raise ValidationError(
                    "suggestions",
                    "too_many_suggestions",
                    f"{len(event.suggestions)} > {self.cfg.max_suggestions}",
                )
            return event
        except ValidationError as exc:
            self._reject(source, exc.reason, exc.field, str(exc))
            return None

    def _apply(self, event: Impression | Feedback, source: Source) -> None:
        partition, user_key = source.partition, f"u:{event.user_id}"
        user: UserState = self.table.get(user_key) or new_user_state(partition)
        if isinstance(event, Impression):
            outcome: str = on_impression(
                user, event, source.offset, self.watermark(partition), self.cfg
            )
            if outcome == "accepted":
                self.table[f"r:{event.request_id}"] = event.model_dump_json(by_alias=True)
                self._watch(partition, user["pending"][event.request_id]["deadline"], event)
                for held_outcome, orphan in release_orphans(user, event.request_id):
                    self._count(held_outcome, self._orphan_source(source, orphan, event.user_id))
        else:
            raw = (source.value or b"").decode()
            outcome = on_feedback(user, event, source.offset, raw, self.cfg)
            if outcome == "held":
                self._watch(partition, user["orphans"][-1]["deadline"], event)
        self._count(outcome, source)
        if outcome != "replayed":
            self.table[user_key] = user

    def _count(self, outcome: str, source: Source) -> None:
        self.stats[outcome] += 1
        if outcome in ERROR_OUTCOMES:
            self._reject(source, outcome, "request_id", outcome.replace("_", " "))

    def _watch(self, partition: int, deadline: int, event: Impression | Feedback) -> None:
        heapq.heappush(self.deadlines[partition], (deadline, event.request_id, event.user_id))

    def _orphan_source(self, source: Source, orphan: Orphan, user_id: str) -> Source:
        return Source(
            self.topics.feedback,
            source.partition,
            orphan["offset"],
            user_id.encode(),
            orphan["raw"].encode(),
        )

    def _advance(self, partition: int, ts: int, *topics: str) -> None:
        seen = self.seen.setdefault(partition, {})
        for topic in topics:
            seen[topic] = max(seen.get(topic, 0), ts)

    def watermark(self, partition: int) -> int:
        seen = self.seen.get(partition, {})
        return min(seen.get(self.topics.impressions, 0), seen.get(self.topics.feedback, 0))

    def caught_up(self, partition: int, highwater: Callable[[TP], int | None]) -> bool | None:
        """Has this worker handled everything the broker had on both source partitions?

        What the group had committed when the partition was assigned counts as handled
        (by the previous owner, its state recovered from the changelog). None: unknown
        until `committed` is filled for the partition.
        """
        for topic in (self.topics.impressions, self.topics.feedback):
            key = (topic, partition)
            if key not in self.positions and key not in self.committed:
                return None
            done = max(self.positions.get(key, -1), self.committed.get(key, 0) - 1)
            end = highwater(TP(topic, partition))
            if end is None or done + 1 < end:
                return False
        return True

    # -- closing windows -----------------------------------------------------------------
    async def _close_due(self, partition: int) -> None:
        """Close every window of `partition` that the watermark passed, as one batch.

        Batches are at most one per `close_interval_s` per partition: each one waits for
        the broker to acknowledge its samples, and results do not depend on when a
        window closes, only on the order (deadline, request id), which batching keeps.
        """
        heap, watermark = self.deadlines[partition], self.watermark(partition)
        if not heap or heap[0][0] > watermark:
            return
        now = time.monotonic()
        if now - self.last_close.get(partition, 0.0) < self.cfg.close_interval_s:
            return
        self.last_close[partition] = now
        glob: GlobalState = self.table.get(f"g:{partition}") or new_global_state()
        users: dict[str, UserState] = {}
        closed: list[str] = []
        deliveries = []
        while heap and heap[0][0] <= watermark:
            _, request_id, user_id = heapq.heappop(heap)
            user = users.get(user_id) or self.table.get(f"u:{user_id}")
            if user is None:
                continue
            users[user_id] = user
            pending = user["pending"].get(request_id)
            if pending is not None and pending["deadline"] <= watermark:
                impression = Impression.model_validate_json(self.table[f"r:{request_id}"])
                deliveries += [await self._emit(s) for s in close(user, glob, impression, self.cfg)]
                closed.append(request_id)
            for orphan in expire_orphans(user, watermark):
                source = Source(
                    self.topics.feedback,
                    partition,
                    orphan["offset"],
                    user_id.encode(),
                    orphan["raw"].encode(),
                )
                self._count("unknown_impression", source)
        # The broker has the samples before any state says they were emitted.
        await asyncio.gather(*deliveries)
        self.table[f"g:{partition}"] = glob  # before the users: see the module docstring
        for user_id, user in users.items():
            self.table[f"u:{user_id}"] = user
        for request_id in closed:
            del self.table[f"r:{request_id}"]
        self.stats["samples"] += len(deliveries)

    async def _emit(self, sample: Sample) -> Any:
        return await self.samples.send(
            key=sample.user_id.encode(), value=sample.to_json_bytes(), force=True
        )

    def _reject(self, source: Source, reason: str, field: str, detail: str) -> None:
        """Dead-letter the raw bytes unchanged; where they came from and why in headers."""
        self.stats["dead_letters"] += 1
        letter = DeadLetter(reason=reason, field=field, detail=detail, stage="streams",
                            source_topic=source.topic, source_partition=source.partition,
                            source_offset=source.offset)
        # Attached to the event being processed: Faust publishes it before committing it.
        self._dead_letters.append(
            self.dlq.send(key=source.key, value=source.value, headers=dict(letter.headers()))
        )

    # -- the deadline index is derived state, rebuilt from the table ---------------------
    def _ensure_index(self, partition: int) -> None:
        if partition in self.deadlines:
            return
        heap: list[tuple[int, str, str]] = []
        for key, state in self.table.items():
            if key.startswith("u:") and state and state["partition"] == partition:
                heap.extend((deadline, rid, key[2:]) for deadline, rid in deadlines(state))
        heapq.heapify(heap)
        self.deadlines[partition] = heap
        if heap:
            log.info("partition %d: %d open windows restored", partition, len(heap))

    def report(self, partitions: list[int]) -> None:
        """One progress line: what this worker owns, how fast it goes, what it dropped."""
        now = time.monotonic()
        events = self.stats["events"]
        rate = (events - self._last_report[1]) / max(now - self._last_report[0], 1e-9)
        self._last_report = (now, events)
        dead = self.stats["dead_letters"]
        log.warning(
            "streams: partitions=%s events=%d (%.0f/s) samples=%d dead_letters=%d open_windows=%d",
            partitions,
            events,
            rate,
            self.stats["samples"],
            dead,
            sum(len(h) for h in self.deadlines.values()),
        )

    def forget(self, partitions: set[int]) -> None:
        """Drop derived state of partitions this worker no longer owns."""
        for partition in partitions:
            for topic in (self.topics.impressions, self.topics.feedback):
                self.positions.pop((topic, partition), None)
                self.committed.pop((topic, partition), None)
            self.deadlines.pop(partition, None)
            self.seen.pop(partition, None)


def committed_offsets(
    kafka: KafkaConfig, group: str, partitions: set[int]
) -> dict[tuple[str, int], int] | None:
    """The group's committed offsets (next offset to read) of the source partitions, or
    None if the broker cannot tell right now (asked again at the next tick)."""
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient

    tps = [
        TopicPartition(t, p)
        for t in (kafka.topics.impressions, kafka.topics.feedback)
        for p in partitions
    ]
    try:
        admin = KafkaAdminClient(**kafka.client_kwargs())
        try:
            offsets = admin.list_group_offsets({group: tps})[group]
        finally:
            admin.close()
    except Exception as exc:  # the broker is restarting, the group is rebalancing, …
        log.warning("cannot read committed offsets of %s yet: %s", group, exc)
        return None
    found = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
    return {(tp.topic, tp.partition): max(found.get((tp.topic, tp.partition), 0), 0) for tp in tps}


def create_app(cfg: StreamsConfig, kafka: KafkaConfig) -> ToolrecApp:
    """Build the Faust app; `faust.Worker(app).execute_from_commandline()` runs it."""
    app = ToolrecApp(
        cfg.app_id,
        broker=kafka.faust_broker_url(),
        broker_credentials=kafka.faust_credentials(),
        store=cfg.store,
        datadir=str(cfg.data_dir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        processing_guarantee="at_least_once",
        broker_commit_interval=cfg.commit_interval_s,
        broker_session_timeout=cfg.session_timeout_s,
        broker_heartbeat_interval=max(cfg.session_timeout_s / 6, 0.2),
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        # Batch changelog and sample writes: one produce request per message is the
        # bottleneck otherwise (a socket write per table update).
        producer_linger=cfg.producer_linger_ms / 1000,
        producer_max_batch_size=256 * 1024,
        table_standby_replicas=cfg.standby_replicas,
    )
    app.kafka_config = kafka
    processor = Processor(app, cfg, kafka)
    ticks = app.topic(ticks_topic_name(cfg), partitions=kafka.partitions, **RAW_BYTES)
    source = app.topic(
        kafka.topics.impressions, kafka.topics.feedback, ticks_topic_name(cfg), **RAW_BYTES
    )

    @app.agent(source, name="calibrate")
    async def calibrate(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            await processor.handle(
                message.topic, message.partition, message.offset, event.key, event.value
            )

    # faust types app.timer's decorator as a bare Callable.
    @app.timer(interval=cfg.tick_interval_s)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        now = json.dumps({"ts": now_ms()}).encode()
        partitions = {
            tp.partition for tp in app.consumer.assignment() if tp.topic == kafka.topics.impressions
        }
        for partition in sorted(partitions):
            caught_up = processor.caught_up(partition, app.consumer.highwater)
            if caught_up is None:
                committed = await asyncio.to_thread(
                    committed_offsets, kafka, cfg.app_id, partitions
                )
                processor.committed.update(committed or {})
            elif caught_up:
                await ticks.send(value=now, partition=partition, force=True)

    # faust types app.timer's decorator as a bare Callable.
    @app.timer(interval=cfg.stats_interval_s)  # type: ignore[untyped-decorator]
    async def report() -> None:
        processor.report(
            sorted(
                tp.partition
                for tp in app.consumer.assignment()
                if tp.topic == kafka.topics.impressions
            )
        )

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: ToolrecApp, revoked: set[TP], **_: Any) -> None:
        processor.forget({tp.partition for tp in revoked if tp.topic == kafka.topics.impressions})

    app.processor = processor  # type: ignore[attr-defined]
    return app
