"""Follow `toolrec.models`: every champion announcement asks the `ModelManager` to
reconcile with the registry. The announcement is only a trigger: its paths are logged,
never loaded (`serving.hotswap` reads the registry, and keeps the current model when the
registry cannot be read).

The follower reads without a consumer group (every serving replica sees every message)
from the end of the topic at start — the champion at start comes from the registry
itself. tansu may report an end below the truth (DESIGN.md §5a), so a few old messages
can be read again: harmless, as a reconcile with an unchanged champion does nothing.
An unreachable broker is retried with a capped backoff; the registry poll of the manager
covers announcements missed meanwhile.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from contracts.models import parse_announcement
from serving.hotswap import ModelManager
from toolrec.kafka import KafkaConfig

__all__ = ["ModelFollower"]

log = logging.getLogger(__name__)


class ModelFollower:
    """A thread that turns toolrec.models messages into reconcile requests."""

    def __init__(self, kafka: KafkaConfig, manager: ModelManager, *,
                 poll_timeout_s: float = 0.5, backoff_max_s: float = 10.0) -> None:
        self.kafka = kafka
        self.manager = manager
        self.poll_timeout_s = poll_timeout_s
        self.backoff_max_s = backoff_max_s
        self.seen = 0
        self.connected = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-follower",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            consumer = None
            try:
                consumer = self._subscribe()
                self.connected = True
                # an announcement sent while we were not reading would be lost: check now
                self.manager.request("follower subscribed")
                backoff = 0.5
                while not self._stopping.is_set():
                    self._poll(consumer)
            except Exception as exc:  # broker down, topic missing: retry later
                self.connected = False
                log.warning("model follower: cannot read %s at %s (%r); retrying in %.1f s",
                            self.kafka.topics.models, self.kafka.bootstrap_servers, exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
            finally:
                if consumer is not None:
                    consumer.close()

    def _subscribe(self) -> Any:
        from kafka import KafkaConsumer, TopicPartition

        from toolrec.errors import ServingError

        consumer = KafkaConsumer(**self.kafka.client_kwargs(), group_id=None,
                                 enable_auto_commit=False, bootstrap_timeout_ms=5000,
                                 request_timeout_ms=6000, fetch_max_wait_ms=200)
        topic = self.kafka.topics.models
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            consumer.close()
            raise ServingError(f"topic {topic} does not exist yet; the follower retries: create "
                               "it with `toolrec streams topics`")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_end(*tps)
        for tp in tps:
            consumer.position(tp)  # resolve "end" now, before any announcement can arrive
        return consumer

    def _poll(self, consumer: Any) -> None:
        for batch in consumer.poll(timeout_ms=int(self.poll_timeout_s * 1000)).values():
            for message in batch:
                self.seen += 1
                announcement = parse_announcement(message.value)
                log.info("model follower: %s of %s announced",
                         announcement.action if announcement else "an unreadable message",
                         announcement.version if announcement else "?")
                self.manager.request("announcement")
