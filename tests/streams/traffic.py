"""Deterministic test traffic and the samples it must produce (computed by the pure
window functions, partition by partition, as the worker must)."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from functools import partial

from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from contracts.events import Feedback, Impression
from streams.config import StreamsConfig
from streams.window import (
    close,
    new_global_state,
    new_user_state,
    on_feedback,
    on_impression,
    release_orphans,
)
from tests.streams.events import feedback, impression
from toolrec.kafka import KafkaConfig


class Traffic:
    """Waves of impressions with clicks, executes, dismisses and duplicate clicks."""

    def __init__(self, kafka: KafkaConfig, *, seed: int = 7, users: int = 12) -> None:
        self.kafka = kafka
        self.rng = random.Random(seed)
        self.users = [f"p_user{u:02d}" for u in range(users)]
        self.click_rate = {u: self.rng.choice([0.05, 0.2, 0.6]) for u in self.users}
        self.events: list[Impression | Feedback] = []
        self.producer = KafkaProducer(
            **kafka.client_kwargs(),
            acks="all",
            linger_ms=5,
            max_in_flight_requests_per_connection=1,
        )

    def wave(self, n: int) -> None:
        """Send n impressions (and their feedback, right after) with ts = now."""
        now = int(time.time() * 1000)
        start = len(self.events)
        for _ in range(n):
            user = self.rng.choice(self.users)
            rid = f"r{len(self.events):05d}"
            self.events.append(impression(rid, user_id=user, ts=now))
            for position in (1, 2, 3):
                self._feedback(user, rid, position, now)
        for event in self.events[start:]:
            topic = (
                self.kafka.topics.impressions
                if isinstance(event, Impression)
                else self.kafka.topics.feedback
            )
            self.producer.send(topic, key=event.user_id.encode(), value=event.to_json_bytes())
        self.producer.flush()

    def _feedback(self, user: str, rid: str, position: int, now: int) -> None:
        roll = self.rng.random()
        if roll < self.click_rate[user]:
            kind = self.rng.choice(["click", "click", "execute", "duplicate"])
            self.events.append(feedback(rid, position, user_id=user, ts=now + 1))
            if kind == "execute":
                self.events.append(
                    feedback(
                        rid,
                        position,
                        user_id=user,
                        ts=now + 2,
                        type="execute",
                        success=self.rng.random() < 0.8,
                    )
                )
            if kind == "duplicate":
                self.events.append(
                    feedback(
                        rid, position, user_id=user, ts=now + 3, event_id=f"dup-{rid}-{position}"
                    )
                )
        elif roll < self.click_rate[user] + 0.05:
            self.events.append(feedback(rid, position, user_id=user, ts=now + 1, type="dismiss"))

    def close(self) -> None:
        self.producer.close()

    def request_count(self) -> int:
        return sum(isinstance(e, Impression) for e in self.events)

    def expected(self, cfg: StreamsConfig) -> dict[str, dict]:
        """sample_id → sample, as a correct worker emits them (all feedback in time)."""
        by_partition: dict[int, list[Impression | Feedback]] = defaultdict(list)
        for event in self.events:  # Kafka's default partitioner: murmur2 of the key
            partition = (murmur2(event.user_id.encode()) & 0x7FFFFFFF) % self.kafka.partitions
            by_partition[partition].append(event)
        samples: dict[str, dict] = {}
        for partition, events in by_partition.items():
            users = defaultdict(partial(new_user_state, partition))
            impressions = {}
            for offset, event in enumerate(events):
                user = users[event.user_id]
                if isinstance(event, Impression):
                    impressions[event.request_id] = event
                    assert on_impression(user, event, offset, 0, cfg) == "accepted"
                    release_orphans(user, event.request_id)
                else:
                    on_feedback(user, event, offset, event.to_json_bytes().decode(), cfg)
            glob = new_global_state()
            order = sorted(
                (p["deadline"], rid, uid)
                for uid, u in users.items()
                for rid, p in u["pending"].items()
            )
            for _, rid, uid in order:
                for sample in close(users[uid], glob, impressions[rid], cfg):
                    samples[sample.sample_id] = sample.model_dump(mode="json", by_alias=True)
        return samples
