"""Ships spooled events to Kafka in spool order: none lost, none sent twice.

Request handlers call `EventPublisher.publish`, which appends to the durable `Spool` and
returns at once; a sender thread reads the spool in order and produces with kafka-python
(acks=all, one request in flight per connection so per-partition order holds). A batch is
sent in two durable steps:

1. mark the cursor `inflight = last seq of the batch` (the window is now *uncertain*),
2. send and wait for every acknowledgement, then mark `acked = inflight` with the offsets
   the broker returned.

If the broker is unreachable the batch fails, the producer is dropped and the thread backs
off (doubling, capped) while requests keep appending to the spool. Before anything new is
sent after a failure — or after a crash of the whole process between the two marks — the
uncertain window is *resolved*: a consumer reads each partition of the window's topics
from the recorded offset (at or below the first uncertain record) to its high watermark and
collects the event ids found; only the events not found are sent again. So a record the
broker stored just before the connection broke is not duplicated, and one it never got is
not lost. The memory engine of tansu empties its topics on restart: a recorded offset past
the new end is then read from the beginning, which is exactly the new log.

One caveat that Kafka's own producer shares without idempotence across sessions: if in a
failed batch a later record of a partition landed while an earlier one did not, the earlier
one is re-sent after it (nothing lost or doubled, but that pair is out of order).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from serving.config import ServingConfig
from serving.metrics import Metrics
from serving.spool import Cursor, OutRecord, Spool, SpoolReader
from toolrec.errors import ServingError
from toolrec.kafka import KafkaConfig

__all__ = ["EventPublisher", "SendFailed"]

log = logging.getLogger(__name__)
FAILURE_LOG_INTERVAL_S = 30.0


class SendFailed(ServingError):
    """A batch could not be confirmed (internal: the sender backs off and retries)."""


def _tp_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class EventPublisher:
    """The spool's sender thread. `publish` is safe from any thread."""

    def __init__(
        self,
        kafka: KafkaConfig,
        spool: Spool,
        config: ServingConfig,
        metrics: Metrics,
        *,
        topics: Iterable[str] = (),
    ) -> None:
        self.kafka = kafka
        self.spool = spool
        self.config = config
        self.metrics = metrics
        self.topics = tuple(topics) or (kafka.topics.impressions, kafka.topics.feedback)
        self._producer: Any = None
        self._reader: SpoolReader | None = None
        self._baseline_done = False
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self._last_failure_log = 0.0
        self.last_error: str | None = None
        metrics.spool_depth.set_function(lambda: self.spool.depth)

    # ------------------------------------------------------------------ public
    def publish(self, records: Sequence[OutRecord]) -> int:
        """Append events durably (they are sent in the background); returns the last seq."""
        seq = self.spool.append(records)
        for record in records:
            self.metrics.events_spooled.labels(record.topic).inc()
        return seq

    @property
    def connected(self) -> bool:
        return self._failing_since is None and self._producer is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="spool-sender", daemon=True)
        self._thread.start()

    def stop(self, *, drain_timeout_s: float | None = None) -> None:
        """Keep sending for up to `drain_timeout_s` (config default), then stop. Whatever is
        not acknowledged by then stays in the spool for the next start."""
        timeout = self.config.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        self._drain_until = time.monotonic() + timeout
        self._stopping.set()
        self.spool.wake()
        if self._thread is not None:
            self._thread.join(timeout=timeout + self.config.send_timeout_s * 3 + 5)
            self._thread = None
        self._close_producer()
        if self.spool.depth:
            log.warning("spool: %d events not yet sent stay in %s for the next start",
                        self.spool.depth, self.spool.directory)

    def wait_drained(self, timeout_s: float) -> bool:
        """Block until every spooled event is acknowledged (tests, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.spool.depth == 0 and not self.spool.cursor.uncertain:
                return True
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------------ loop
    def _done(self) -> bool:
        if not self._stopping.is_set():
            return False
        return self.spool.depth == 0 or time.monotonic() >= self._drain_until

    def _run(self) -> None:
        backoff = self.config.retry_backoff_s
        while not self._done():
            try:
                progressed = self._step()
            except Exception as exc:  # broker errors come in many kafka-python types
                self._on_failure(exc)
                if self._stopping.is_set():  # draining: retry quickly until the deadline
                    time.sleep(min(backoff, 0.2))
                else:
                    self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.config.retry_backoff_max_s)
                continue
            backoff = self.config.retry_backoff_s
            self._on_success()
            if not progressed:
                self.spool.wait_for(self.spool.cursor.acked + 1, timeout_s=0.5)

    def _step(self) -> bool:
        """Send or resolve one batch; False when there is nothing to do."""
        cursor = self.spool.cursor
        if cursor.uncertain:
            self._resolve(cursor)
            return True
        records = self._read(cursor.acked + 1, self.config.send_batch)
        if not records:
            if self._producer is None:  # connect while idle: /readyz shows the truth early
                self._producer_or_new()
            return False
        if not self._baseline_done:
            cursor = self._take_baseline(cursor)
        last = records[-1][0]
        self.spool.mark(Cursor(cursor.acked, last, cursor.offsets))  # phase 1: uncertain
        offsets = self._send([r for _, r in records])
        self.spool.mark(Cursor(last, last, {**cursor.offsets, **offsets}))  # phase 2: acked
        return True

    def _read(self, start: int, limit: int) -> list[tuple[int, OutRecord]]:
        if self._reader is None or self._reader.next_seq != start:
            if self._reader is not None:
                self._reader.close()
            self._reader = self.spool.reader(start)
        return self._reader.read(limit)

    # ------------------------------------------------------------------ sending
    def _producer_or_new(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            timeout_ms = int(self.config.send_timeout_s * 1000)
            self._producer = KafkaProducer(
                **self.kafka.client_kwargs(),
                acks="all",
                linger_ms=5,
                allow_auto_create_topics=False,  # topics are created by `toolrec infra`
                max_in_flight_requests_per_connection=1,
                max_block_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
                delivery_timeout_ms=timeout_ms + 5,
                bootstrap_timeout_ms=timeout_ms,
                reconnect_backoff_max_ms=1000,
            )
        return self._producer

    def _send(self, records: Sequence[OutRecord]) -> dict[str, int]:
        """Produce and wait for every ack; {topic:partition: next offset}. Raises SendFailed."""
        records = [r for r in records if r.topic]  # erased by Spool.forget: ack, never send
        producer = self._producer_or_new()
        futures = [
            (record, producer.send(record.topic, key=record.key.encode(),
                                   value=record.value.encode()))
            for record in records
        ]
        producer.flush(timeout=self.config.send_timeout_s)
        offsets: dict[str, int] = {}
        for record, future in futures:
            if not future.is_done:
                raise SendFailed(f"no acknowledgement within {self.config.send_timeout_s} s")
            if future.failed():
                raise SendFailed(f"send of {record.id} to {record.topic} failed: "
                                 f"{future.exception!r}")
            meta = future.value
            key = _tp_key(meta.topic, meta.partition)
            offsets[key] = max(offsets.get(key, 0), meta.offset + 1)
            self.metrics.events_sent.labels(record.topic).inc()
        return offsets

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=1)
            except Exception as exc:  # closing a producer of a dead broker may complain
                log.debug("closing the producer: %r", exc)

    # ------------------------------------------------------------------ uncertainty
    def _take_baseline(self, cursor: Cursor) -> Cursor:
        """Record, before the first send of this process, a start offset for every
        partition without one: where a later resolution begins reading."""
        consumer = self._consumer()
        try:
            known = set(cursor.offsets)
            tps = [tp for tp in self._partitions(consumer) if _tp_key(*tp) not in known]
            ends = consumer.end_offsets(tps) if tps else {}
        finally:
            consumer.close()
        # tansu may report ends below the truth (DESIGN.md §5a): lower is still a safe start
        offsets = {**cursor.offsets, **{_tp_key(tp.topic, tp.partition): int(end)
                                        for tp, end in ends.items()}}
        cursor = Cursor(cursor.acked, cursor.inflight, offsets)
        self.spool.mark(cursor)
        self._baseline_done = True
        return cursor

    def _resolve(self, cursor: Cursor) -> None:
        """Send exactly the uncertain events the topic does not already hold."""
        window = self._read(cursor.acked + 1, cursor.inflight - cursor.acked)
        if len(window) != cursor.inflight - cursor.acked:
            raise SendFailed(f"the spool lacks uncertain records {cursor.acked + 1}.."
                             f"{cursor.inflight}")
        present, ends = self._ids_in_topics({r.topic for _, r in window}, cursor.offsets)
        missing = [r for _, r in window if r.id not in present]
        already = len(window) - len(missing)
        if already:
            self.metrics.events_skipped.inc(already)
            log.info("spool: %d of %d uncertain events were already in Kafka; sending the "
                     "other %d", already, len(window), len(missing))
        offsets = self._send(missing) if missing else {}
        merged = {**cursor.offsets, **ends}
        for key, value in offsets.items():
            merged[key] = max(merged.get(key, 0), value)
        self.spool.mark(Cursor(cursor.inflight, cursor.inflight, merged))

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer

        timeout_ms = int(self.config.send_timeout_s * 1000)
        return KafkaConsumer(
            **self.kafka.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            allow_auto_create_topics=False,
            request_timeout_ms=max(timeout_ms, 1000) + 1000,
            fetch_max_wait_ms=100,
            bootstrap_timeout_ms=timeout_ms,
        )

    def _partitions(self, consumer: Any) -> list[Any]:
        from kafka import TopicPartition

        tps = []
        for topic in self.topics:
            for partition in sorted(consumer.partitions_for_topic(topic) or ()):
                tps.append(TopicPartition(topic, partition))
        return tps

    def _ids_in_topics(
        self, topics: set[str], offsets: dict[str, int]
    ) -> tuple[set[str], dict[str, int]]:
        """Event ids in `topics` from the recorded offsets to the high watermarks, and those
        watermarks. Raises SendFailed when the read cannot complete (broker down)."""
        consumer = self._consumer()
        try:
            tps = [tp for tp in self._partitions(consumer) if tp.topic in topics]
            if not tps:
                return set(), {}
            consumer.assign(tps)
            # a recorded offset past the reported end means the log was truncated or the
            # topic recreated; starting lower only reads more, so clamp to the end
            ends = consumer.end_offsets(tps)
            for tp in tps:
                start = offsets.get(_tp_key(tp.topic, tp.partition))
                if start is None:
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, min(start, int(ends.get(tp, 0))))
            return self._drain_ids(consumer, tps)
        finally:
            consumer.close()

    def _drain_ids(self, consumer: Any, tps: list[Any]) -> tuple[set[str], dict[str, int]]:
        ids: set[str] = set()
        deadline = time.monotonic() + self.config.send_timeout_s * 2
        while True:
            for batch in consumer.poll(timeout_ms=200).values():
                ids.update(_event_id(m.value) for m in batch)
            marks = {tp: consumer.highwater(tp) for tp in tps}
            if all(m is not None and consumer.position(tp) >= m for tp, m in marks.items()):
                ends = {_tp_key(tp.topic, tp.partition): int(m) for tp, m in marks.items()}
                return ids - {""}, ends
            if time.monotonic() > deadline:
                raise SendFailed("could not read the topics to the end to check which "
                                 "uncertain events arrived")

    # ------------------------------------------------------------------ reporting
    def _on_failure(self, exc: Exception) -> None:
        self._close_producer()
        self._baseline_done = False
        self.metrics.send_failures.inc()
        self.metrics.broker_up.set(0)
        now = time.monotonic()
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self._failing_since is None:
            self._failing_since = now
        if now - self._last_failure_log >= FAILURE_LOG_INTERVAL_S:
            self._last_failure_log = now
            log.warning("spool: cannot reach Kafka at %s for %.0f s (%s); %d events spooled in "
                        "%s, retrying", self.kafka.bootstrap_servers, now - self._failing_since,
                        self.last_error, self.spool.depth, self.spool.directory)

    def _on_success(self) -> None:
        if self._failing_since is not None:
            log.info("spool: Kafka reachable again after %.0f s; %d events left to send",
                     time.monotonic() - self._failing_since, self.spool.depth)
        self._failing_since = None
        self._last_failure_log = 0.0
        self.last_error = None
        self.metrics.broker_up.set(1 if self._producer is not None else 0)


def _event_id(value: bytes | None) -> str:
    try:
        body = json.loads(value or b"")
    except ValueError:
        return ""
    return str(body.get("event_id", "")) if isinstance(body, dict) else ""
