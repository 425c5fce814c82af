"""When the worker closes a window: in the first batch whose watermark passed its deadline
(issue 12: a fixed 0.5 s close interval added up to 0.5 s to click → Delta), or at most
once per `close_interval_s` when one is set. In process: no broker, the sender records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from contracts.events import Feedback, Impression
from streams.app import Processor, Source
from streams.config import StreamsConfig
from streams.sender import BatchSender
from tests.streams.events import feedback, impression
from toolrec.durable import now_ms
from toolrec.kafka import KafkaConfig


class RecordingSender(BatchSender):
    """Keeps every record the worker sends; the broker acknowledges at once."""

    def __init__(self) -> None:
        super().__init__({})
        self.records: list[tuple[str, bytes | None]] = []

    async def start(self) -> None:
        return None

    def add(self, topic: str, key: bytes | None, value: bytes | None, *,
            partition: int | None = None, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        self.records.append((topic, value))

    async def flush(self) -> int:
        return 0


class Worker:
    """A `Processor` that owns partition 0 (empty, nothing to recover) and is fed batches."""

    def __init__(self, cfg: StreamsConfig) -> None:
        self.kafka = KafkaConfig(partitions=1)
        self.processor = Processor(None, cfg, self.kafka)  # type: ignore[arg-type]
        self.out = self.processor.out = RecordingSender()
        self.processor.state.data[0] = {}
        self.offsets = {self.kafka.topics.impressions: 0, self.kafka.topics.feedback: 0}
        for topic in self.offsets:
            self.processor.committed[(topic, 0)] = 0

    def batch(self, *events: Impression | Feedback) -> set[str]:
        """Handle one batch; returns the request ids whose samples it sent."""
        sources = []
        for event in events:
            topic = (self.kafka.topics.impressions if isinstance(event, Impression)
                     else self.kafka.topics.feedback)
            sources.append(Source(topic, 0, self.offsets[topic], event.user_id.encode(),
                                  event.to_json_bytes(), event.ts))
            self.offsets[topic] += 1
        before = len(self.out.records)
        asyncio.run(self.processor.handle_batch(sources))
        return {json.loads(value or b"{}")["request_id"]
                for topic, value in self.out.records[before:]
                if topic == self.kafka.topics.samples}


def windows(worker: Worker, t0: int) -> list[set[str]]:
    """Three back-to-back batches, each opening a window (1 s, no lateness) and moving the
    watermark past the deadline of the previous batch's window."""
    return [worker.batch(impression(f"r{i}", f"p_user{i}", t0 + 1500 * i),
                         feedback(f"r{i}", 1, f"p_user{i}", t0 + 1500 * i + 100))
            for i in range(3)]


def test_a_due_window_closes_in_the_next_batch_by_default() -> None:
    cfg = StreamsConfig(attribution_window_s=1.0, allowed_lateness_s=0.0)
    assert cfg.close_interval_s == 0
    assert windows(Worker(cfg), now_ms() - 60_000) == [set(), {"r0"}, {"r1"}]


def test_a_close_interval_defers_closes_to_its_cadence() -> None:
    cfg = StreamsConfig(attribution_window_s=1.0, allowed_lateness_s=0.0, close_interval_s=60)
    assert windows(Worker(cfg), now_ms() - 60_000) == [set(), {"r0"}, set()]
