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
Windows close on event time: the watermark of a partition is the largest event time seen
there, advanced by ticks (wall clock) every `tick_interval_s` so idle partitions close too.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from collections import Counter
from typing import Any

import faust
from faust.types import TP

from streams.config import StreamsConfig
from streams.schemas import Feedback, Impression, Sample, parse_event
from streams.window import (
    GlobalState,
    UserState,
    close,
    new_global_state,
    new_user_state,
    on_feedback,
    on_impression,
)
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


class ToolrecApp(faust.App):
    """A Faust app that knows its KafkaConfig (the tansu transport reads it)."""

    kafka_config: KafkaConfig


def ticks_topic_name(cfg: StreamsConfig) -> str:
    return f"{cfg.app_id}-ticks"


class Processor:
    """Routes one source event to the window transitions and writes the results."""

    def __init__(self, app: ToolrecApp, cfg: StreamsConfig, kafka: KafkaConfig) -> None:
        self.cfg = cfg
        self.topics = kafka.topics
        self.table = app.Table(
            "state", default=None, partitions=kafka.partitions, key_type=str
        )  # values: JSON, the app default
        raw = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
        }
        self.samples = app.topic(kafka.topics.samples, **raw)
        self.dlq = app.topic(kafka.topics.dlq, **raw)
        self.watermarks: dict[int, int] = {}
        self.deadlines: dict[int, list[tuple[int, str, str]]] = {}  # partition -> heap
        self.stats: Counter[str] = Counter()

    # -- entry point ---------------------------------------------------------------------
    async def handle(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        self._ensure_index(partition)
        if topic == self.topics.impressions or topic == self.topics.feedback:
            event = self._validate(topic, partition, offset, key, value)
            if event is not None:
                self._advance(partition, event.ts)
                outcome = self._apply(event, partition, offset)
                self.stats[outcome] += 1
                if outcome in ERROR_OUTCOMES:
                    await self._dead_letter(
                        topic, partition, offset, key, value, outcome, "request_id"
                    )
        else:  # a tick: wall-clock progress for idle partitions
            self._advance(partition, int(json.loads(value or b"{}").get("ts", 0)))
        await self._close_due(partition)

    # -- validation and application ------------------------------------------------------
    def _validate(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> Impression | Feedback | None:
        try:
            event = parse_event(value or b"", max_bytes=self.cfg.max_event_bytes)
            expected = Impression if topic == self.topics.impressions else Feedback
            if not isinstance(event, expected):
                raise ValidationError(
                    "schema", "wrong_topic", f"{type(event).__name__} event on topic {topic}"
                )
            if isinstance(event, Impression) and len(event.suggestions) > self.cfg.max_suggestions:
                raise ValidationError(
                    "suggestions",
                    "too_many_suggestions",
                    f"{len(event.suggestions)} > {self.cfg.max_suggestions}",
                )
            return event
        except ValidationError as exc:
            self.stats[exc.reason] += 1
            asyncio.ensure_future(
                self._dead_letter(
                    topic, partition, offset, key, value, exc.reason, exc.field, str(exc)
                )
            )
            return None

    def _apply(self, event: Impression | Feedback, partition: int, offset: int) -> str:
        user_key = f"u:{event.user_id}"
        user: UserState = self.table.get(user_key) or new_user_state(partition)
        if isinstance(event, Impression):
            outcome = on_impression(user, event, offset, self.watermarks[partition], self.cfg)
            if outcome == "accepted":
                self.table[f"r:{event.request_id}"] = event.model_dump(mode="json", by_alias=True)
                deadline = user["pending"][event.request_id]["deadline"]
                heapq.heappush(
                    self.deadlines[partition], (deadline, event.request_id, event.user_id)
                )
        else:
            outcome = on_feedback(user, event, offset)
        if outcome != "replayed":
            self.table[user_key] = user
        return outcome

    def _advance(self, partition: int, ts: int) -> None:
        self.watermarks[partition] = max(self.watermarks.get(partition, 0), ts)

    # -- closing windows -----------------------------------------------------------------
    async def _close_due(self, partition: int) -> None:
        heap, watermark = self.deadlines[partition], self.watermarks.get(partition, 0)
        if not heap or heap[0][0] > watermark:
            return
        glob: GlobalState = self.table.get(f"g:{partition}") or new_global_state()
        users: dict[str, UserState] = {}
        closed: list[str] = []
        deliveries = []
        while heap and heap[0][0] <= watermark:
            _, request_id, user_id = heapq.heappop(heap)
            user = users.get(user_id) or self.table.get(f"u:{user_id}")
            stored = self.table.get(f"r:{request_id}")
            if user is None or stored is None or request_id not in user["pending"]:
                continue  # closed before a restart
            impression = Impression.model_validate(stored)
            for sample in close(user, glob, impression, self.cfg):
                deliveries.append(await self._emit(sample))
            users[user_id] = user
            closed.append(request_id)
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

    async def _dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        field: str,
        detail: str = "",
    ) -> None:
        """The raw bytes unchanged; where they came from and why, in the headers."""
        headers = {
            "reason": reason,
            "field": field,
            "detail": detail[:500],
            "source_topic": topic,
            "source_partition": str(partition),
            "source_offset": str(offset),
            "stage": "streams",
        }
        await self.dlq.send(
            key=key, value=value, force=True, headers={k: v.encode() for k, v in headers.items()}
        )

    # -- the deadline index is derived state, rebuilt from the table ---------------------
    def _ensure_index(self, partition: int) -> None:
        if partition in self.deadlines:
            return
        heap: list[tuple[int, str, str]] = []
        for key, state in self.table.items():
            if key.startswith("u:") and state and state["partition"] == partition:
                heap.extend((p["deadline"], rid, key[2:]) for rid, p in state["pending"].items())
        heapq.heapify(heap)
        self.deadlines[partition] = heap
        if heap:
            log.info("partition %d: %d open windows restored", partition, len(heap))

    def forget(self, partitions: set[int]) -> None:
        """Drop derived state of partitions this worker no longer owns."""
        for partition in partitions:
            self.deadlines.pop(partition, None)
            self.watermarks.pop(partition, None)


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
        table_standby_replicas=cfg.standby_replicas,
    )
    app.kafka_config = kafka
    processor = Processor(app, cfg, kafka)
    raw = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    ticks = app.topic(ticks_topic_name(cfg), partitions=kafka.partitions, **raw)
    source = app.topic(
        kafka.topics.impressions, kafka.topics.feedback, ticks_topic_name(cfg), **raw
    )

    @app.agent(source, name="calibrate")
    async def calibrate(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            await processor.handle(
                message.topic, message.partition, message.offset, event.key, event.value
            )

    @app.timer(interval=cfg.tick_interval_s)
    async def tick() -> None:
        now = json.dumps({"ts": int(time.time() * 1000)}).encode()
        for tp in app.consumer.assignment():
            if tp.topic == kafka.topics.impressions:
                await ticks.send(value=now, partition=tp.partition, force=True)

    @app.on_partitions_revoked.connect
    async def on_revoked(app: ToolrecApp, revoked: set[TP], **_: Any) -> None:
        processor.forget({tp.partition for tp in revoked if tp.topic == kafka.topics.impressions})

    app.processor = processor  # type: ignore[attr-defined]
    return app
