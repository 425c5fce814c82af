"""The Faust worker: impressions + feedback in, calibrated samples (and DLQ records) out.

One agent reads `toolrec.impressions`, `toolrec.feedback` and an internal ticks topic,
all co-partitioned by user, so every event of a user is handled in order by one worker.
The agent takes batches; `Processor.handle_batch` routes each event to the pure transitions
of `streams.window`, closes what is due and writes each changed state key once per batch
(issue 12: Faust's per-message table and send paths cost more than everything else
together). Where the `Processor` runs is `[streams] engine`: in a child process that the
agent hands each batch to (`streams.engine`, the default), or here in Faust's event loop
(`InlineEngine`, batches from `take_events`).

Guarantees (Faust runs at-least-once; tansu cannot do Kafka transactions, DESIGN.md §5d):
- all state lives in one store (`streams.state`) with one changelog partition per source
  partition, so that partition orders every write of a source partition: a user's write
  surviving a crash implies the partition's earlier writes did;
- replayed events are recognised by the source offsets stored in the user's state;
- a batch's samples (and dead letters) are acknowledged by the broker *before* its state
  records are sent, and the transport flushes those before Faust commits the batch's
  offsets, so a crash re-emits identical samples (same `sample_id`, same content) rather
  than losing them; the lake sink keeps one row per `sample_id`;
- a batch is acknowledged only when its body returned (with the engine in a child: when
  the child reported it done), and the body never raises: an event
  that raises is dead-lettered; a delivery the broker refuses stops the process before
  the batch is acknowledged (`handle_batch`).
Windows close on event time. The watermark of a partition is the smaller of the largest
event times seen on its impressions and its feedback partition (the two are consumed
independently, so neither may run ahead for the other). A worker that has consumed
everything there is of a partition sends itself a tick with the wall clock every
`tick_interval_s`, which advances both, so idle partitions close too; while it catches up
(after a restart, a rebalance or a burst) it sends no ticks, so replayed events are judged
by their own times, never as late.

Hostile input (issue 15) — the rules:
- *Event time you can trust.* An event's arrival is its record's timestamp (the producing
  server's clock, or the broker's under LogAppendTime), capped at the worker's clock. An
  event more than `max_future_skew_s` ahead of its arrival is `future_timestamp`, more than
  `event_horizon_s` behind is `stale_timestamp`: both go to the DLQ and touch nothing. An
  event moves the watermark only to min(ts, arrival), so no single clock — however skewed
  within the allowed skew — pushes it past the time the broker saw the event.
- *The watermark survives restarts.* It is persisted in the partition's state (at every
  close batch and every tick) and restored as a floor, so an impression that was late
  before a restart is late after it (`late_impression`, DLQ) instead of being accepted and
  then skipped at close. Events held in serving's spool through an outage are anchored at
  their arrival when they are at most `spool_grace_s` old (`streams.window.deadline_of`).
- *Bounded state.* See `streams.window`: orphan feedback, closed ids and the user's record
  are bounded; what does not fit is dead-lettered with its reason.
- *A request is (user, request_id).* The impression lives in its user's entry. A second
  user's impression with a request id that is open for another user of the partition is
  `request_id_collision` (DLQ): its samples would share sample ids with the first user's.
  (Users on different partitions cannot be compared here; serving assigns request ids.)
- *No crash loop on data.* An event that raises while it is processed is dead-lettered
  with the exception as its reason (`processing_error`), a window whose close raises has
  its impression dead-lettered the same way, and the worker goes on; the event's offset is
  committed only after its dead letter is on the broker (it is attached to the event).
- *Nothing dropped without a record.* Every event ends as state, as samples, or in the DLQ;
  the only events that produce neither are replays of events already applied, duplicate
  clicks and dismissals (counted in the progress line), and a close that the partition's
  state already counted — which only a crash between the two state writes of a close
  batch produces, after its samples were on the broker.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import heapq
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import faust
from faust.types import TP

from contracts.dlq import DeadLetter
from contracts.events import (
    Feedback,
    Impression,
    parse_event,
    protect_untrusted,
)
from contracts.privacy import PiiPolicy
from infra.compat import true_end_offsets
from infra.topics import ensure_topics
from streams.config import StreamsConfig
from streams.gaps import read_range, skipped_range
from streams.sender import BatchSender
from streams.state import ChangelogState, state_topic_name
from streams.window import (
    GlobalState,
    Orphan,
    UserState,
    close_json,
    copy_user,
    deadlines,
    expire_orphans,
    implausible_time,
    new_global_state,
    new_user_state,
    on_feedback,
    on_impression,
    release_orphans,
    state_bytes,
)
from toolrec.durable import now_ms
from toolrec.errors import ValidationError
from toolrec.kafka import KafkaConfig

if TYPE_CHECKING:
    from streams.engine import EngineProcess

log = logging.getLogger(__name__)

# Outcomes dead-lettered, with the field each one blames.
ERROR_OUTCOMES = {
    "duplicate_impression": "request_id",
    "late_impression": "ts",
    "unknown_impression": "request_id",
    "expired_impression": "request_id",
    "position_not_shown": "position",
    "orphan_overflow": "user_id",
    "user_state_full": "user_id",
    "request_id_collision": "request_id",
}
# Exit status of a worker that stops rather than acknowledge an undelivered batch.
EXIT_UNDELIVERED = 75
# Outcomes that changed the user's state (so it is written).
STATE_CHANGES = {"accepted", "counted", "held"}


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
    timestamp: int | None = None  # the record's timestamp (ms), None when unknown


class ToolrecApp(faust.App):
    """A Faust app that knows its KafkaConfig (the tansu transport reads it)."""

    kafka_config: KafkaConfig


def ticks_topic_name(cfg: StreamsConfig) -> str:
    return f"{cfg.app_id}-ticks"


def ensure_worker_topics(cfg: StreamsConfig, kafka: KafkaConfig) -> dict[str, int]:
    """Create the worker's topics (sources, outputs, ticks, the compacted state changelog)
    if missing; returns their partition counts."""
    state = state_topic_name(cfg.app_id)
    return ensure_topics(kafka, [*kafka.topics.all(), ticks_topic_name(cfg), state],
                         compacted=[state])


class Processor:
    """Routes one source event to the window transitions and writes the results."""

    def __init__(self, app: ToolrecApp, cfg: StreamsConfig, kafka: KafkaConfig, *,
                 user_id_key: bytes | None = None, pii: PiiPolicy | None = None) -> None:
        self.cfg = cfg
        self.user_id_key = user_id_key  # None: events are taken as their producer wrote them
        self.pii = pii or PiiPolicy()
        self.kafka = kafka
        self.topics = kafka.topics
        # Keys u:<user>, g:<partition>; values JSON (the app's default codec).
        self.state = ChangelogState(state_topic_name(cfg.app_id), kafka.client_kwargs())
        self.app = app
        self.out = BatchSender(kafka.client_kwargs())  # samples, dead letters, state
        self.seen: dict[int, dict[str, int]] = {}  # partition -> topic -> max event time
        self.positions: dict[tuple[str, int], int] = {}  # last offset handled
        self.committed: dict[tuple[str, int], int] = {}  # group offsets at assignment
        self.last_close: dict[int, float] = {}  # partition -> monotonic time of last batch
        self.deadlines: dict[int, list[tuple[int, str, str]]] = {}  # partition -> heap
        self.owners: dict[int, dict[str, str]] = {}  # partition -> open request id -> user
        # partition -> (user, request id) -> the open impression, parsed (saves parsing its
        # JSON from the state again at close; rebuilt lazily after a restart)
        self.opened: dict[int, dict[tuple[str, str], Impression]] = {}
        self.floor: dict[int, int] = {}  # partition -> persisted watermark
        self.stats: Counter[str] = Counter()
        self.timings: dict[str, float] = {}  # stage → CPU seconds spent in handle_batch
        # stage → wall seconds in handle_batch: beyond the CPU, the waits for the broker's
        # acknowledgements (deliver, state), while the loop runs Faust's own work
        self.wall: dict[str, float] = {}
        self._last_report = (time.monotonic(), 0)

    # -- entry point ---------------------------------------------------------------------
    async def handle_batch(self, batch: list[Source]) -> None:
        """Process a batch of source records, close what is due, then write each changed
        state key once: the batch's samples and dead letters are on the broker before its
        state records are sent, and those before the batch is acknowledged (returns), so
        before Faust commits its offsets (`streams.sender`, `streams.state`).

        Nothing a record contains can make this raise (events that raise are dead-lettered,
        `_guarded`). What can — the broker refusing deliveries beyond the producer's own
        retries — stops the process at once: `take_events` acknowledges a batch whose body
        raised, so returning or raising would commit events whose samples were never
        delivered. A restart recovers the state from the changelog and replays them.
        """
        try:
            clock = _StageClock(self.timings, self.wall)
            await self.out.start()
            partitions = sorted({source.partition for source in batch})
            for partition in partitions:
                await self._ensure_index(partition)
            clock.lap("recover")
            await self._handle_events(batch)
            clock.lap("events")
            for partition in partitions:
                self.stats["samples"] += self._close_due(partition)
            clock.lap("close")
            await self.out.flush()  # samples and dead letters first: the module docstring
            clock.lap("deliver")
            self.stats["state_writes"] += self.state.commit(self._send_state, _state_order)
            await self.out.flush()
            clock.lap("state")
            self.stats["batches"] += 1
        except BaseException:  # also a cancellation half-way: the batch must not be acked
            log.critical("a batch could not be delivered; stopping without acknowledging it",
                         exc_info=True)
            logging.shutdown()
            os._exit(EXIT_UNDELIVERED)

    async def _handle_events(self, batch: list[Source]) -> None:
        """`_handle_one` of each record; an event that follows the last one handled of its
        partition (the usual case) is processed here without a coroutine of its own."""
        events = (self.topics.impressions, self.topics.feedback)
        for source in batch:
            if source.topic in events and self._follows_last(source):
                self._guarded(source)
            else:
                await self._handle_one(source)

    def _follows_last(self, source: Source) -> bool:
        """Whether `source` is the next record of its partition after the last one handled:
        then no record Faust skipped can precede it."""
        return self.positions.get((source.topic, source.partition), -2) + 1 == source.offset

    async def _handle_one(self, source: Source) -> None:
        if source.topic in (self.topics.impressions, self.topics.feedback):
            if not self._follows_last(source):
                for record in await self._skipped_records(source.topic, source.partition,
                                                          source.offset):
                    self._guarded(Source(source.topic, source.partition, record.offset,
                                         record.key, record.value, record.timestamp))
            self._guarded(source)
        else:  # a tick: wall-clock progress for idle partitions
            tick = int(json.loads(source.value or b"{}").get("ts", 0))
            self._advance(source.partition, tick, self.topics.impressions, self.topics.feedback)
            self._persist_watermark(source.partition)

    def _send_state(self, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        self.out.add(topic, key, value, partition=partition)

    def _guarded(self, source: Source) -> None:
        """Process one event; one that raises is dead-lettered and the worker goes on (a
        crash would restart on the same event for ever). Its state is untouched: the
        transitions work on a copy (`streams.window.copy_user`)."""
        try:
            self._process(source)
        except Exception as exc:
            log.exception("%s[%d]@%d raised; dead-lettered", source.topic, source.partition,
                          source.offset)
            self.stats["processing_error"] += 1
            self._reject(source, "processing_error", "<event>", f"{type(exc).__name__}: {exc}")

    def _process(self, source: Source) -> None:
        self.positions[(source.topic, source.partition)] = source.offset
        self.stats["events"] += 1
        event = self._validate(source)
        if event is None:
            return
        protected = self._protect(event)
        if protected is not event:  # state, samples and dead letters hold the protected form
            event, source = protected, source._replace(
                key=protected.user_id.encode(), value=protected.to_json_bytes())
        arrival = self._arrival(source)
        verdict = implausible_time(event.ts, arrival, self.cfg)
        if verdict is not None:
            self.stats[verdict] += 1
            self._reject(source, verdict, "ts", f"ts {event.ts} against arrival {arrival} "
                         f"(allowed: {self.cfg.max_future_skew_s:g} s ahead, "
                         f"{self.cfg.event_horizon_s:g} s behind)")
            return
        self._advance(source.partition, min(event.ts, arrival), source.topic)
        self._apply(event, source, arrival)

    @staticmethod
    def _arrival(source: Source) -> int:
        """When the broker got the event: its record time, never later than our clock."""
        now = now_ms()
        return now if not source.timestamp or source.timestamp <= 0 else min(source.timestamp, now)

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

    def _protect(self, event: Impression | Feedback) -> Impression | Feedback:
        """Producers that write straight to Kafka get the entry points' protection here,
        before any state or sample holds their ids or text (`protect_untrusted`)."""
        if self.user_id_key is None:
            return event
        protected = protect_untrusted(event, self.user_id_key, self.pii)
        if protected is not event:
            self.stats["protected_in_stream"] += 1
        return protected

    def _apply(self, event: Impression | Feedback, source: Source, arrival: int) -> None:
        partition, user_key = source.partition, f"u:{event.user_id}"
        stored: UserState | None = self.state.get(partition, user_key)
        user = copy_user(stored) if stored else new_user_state(partition)
        raw = (source.value or b"").decode()
        if isinstance(event, Impression):
            outcome: str = self._open(user, event, source, raw, arrival)
        else:
            outcome = on_feedback(user, event, source.offset, raw, self.cfg, arrival=arrival)
            if outcome == "held":
                self._watch(partition, user["orphans"][-1]["deadline"], event)
        self._count(outcome, source)
        if outcome in STATE_CHANGES:
            self.state.stage(partition, user_key, user)

    def _open(
        self, user: UserState, event: Impression, source: Source, raw: str, arrival: int
    ) -> str:
        """Open the impression's window in `user` (a copy), or say why not."""
        partition, rid = source.partition, event.request_id
        owner = self.owners[partition].get(rid)
        if owner is not None and owner != event.user_id:
            return "replayed" if source.offset <= user["impression_offset"] else (
                "request_id_collision")
        outcome = on_impression(user, event, source.offset, self.watermark(partition),
                                self.cfg, raw=raw, arrival=arrival)
        if outcome != "accepted":
            return outcome
        if state_bytes(user) > self.cfg.max_user_state_bytes:
            return "user_state_full"  # the copy is dropped: the stored state is unchanged
        self.owners[partition][rid] = event.user_id
        self.opened.setdefault(partition, {})[(event.user_id, rid)] = event
        self._watch(partition, user["pending"][rid]["deadline"], event)
        for held_outcome, orphan in release_orphans(user, rid):
            self._count(held_outcome, self._orphan_source(source, orphan, event.user_id))
        return outcome

    def _count(self, outcome: str, source: Source) -> None:
        self.stats[outcome] += 1
        if outcome in ERROR_OUTCOMES:
            self._reject(source, outcome, ERROR_OUTCOMES[outcome], outcome.replace("_", " "))

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
        """min over the two source topics of the latest trusted time, never below the
        watermark persisted before a restart."""
        seen = self.seen.get(partition, {})
        live = min(seen.get(self.topics.impressions, 0), seen.get(self.topics.feedback, 0))
        return max(live, self.floor.get(partition, 0))

    def _persist_watermark(self, partition: int) -> None:
        """Write the watermark into the partition's state when it moved (on ticks)."""
        watermark = self.watermark(partition)
        if watermark <= self.floor.get(partition, 0):
            return
        glob: GlobalState = self.state.get(partition, f"g:{partition}") or new_global_state()
        glob = copy.deepcopy(glob)
        glob["watermark"] = watermark
        self.state.stage(partition, f"g:{partition}", glob)
        self.floor[partition] = watermark

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
    def _close_due(self, partition: int) -> int:
        """Close every window of `partition` that the watermark passed; returns how many
        samples were queued (sent by `handle_batch` before any state is written).

        In every batch, or at most once per `close_interval_s` per partition when it is
        set: results do not depend on when a window closes, only on the order (deadline,
        request id), which batching keeps.
        """
        heap, watermark = self.deadlines.get(partition), self.watermark(partition)
        if not heap or heap[0][0] > watermark:
            return 0  # nothing due, or the partition was revoked during the batch
        now = time.monotonic()
        if now - self.last_close.get(partition, 0.0) < self.cfg.close_interval_s:
            return 0
        self.last_close[partition] = now
        stored: GlobalState | None = self.state.get(partition, f"g:{partition}")
        glob = copy.deepcopy(stored) if stored else new_global_state()
        users: dict[str, UserState] = {}
        emitted = 0
        while heap and heap[0][0] <= watermark:
            _, request_id, user_id = heapq.heappop(heap)
            if user_id not in users:
                found: UserState | None = self.state.get(partition, f"u:{user_id}")
                if found is None:
                    continue
                users[user_id] = copy_user(found)
            user = users[user_id]
            pending = user["pending"].get(request_id)
            if pending is not None and pending["deadline"] <= watermark:
                emitted += self._close_one(user, user_id, glob, request_id, partition)
            for orphan in expire_orphans(user, watermark):
                self._count("unknown_impression", self._orphan_source(
                    Source(self.topics.feedback, partition, -1, None, None), orphan, user_id))
        glob["watermark"] = max(glob.get("watermark", 0), watermark)
        self.floor[partition] = max(self.floor.get(partition, 0), glob["watermark"])
        self.state.stage(partition, f"g:{partition}", glob)
        for user_id, user in users.items():
            self.state.stage(partition, f"u:{user_id}", user)
        return emitted

    def _close_one(
        self, user: UserState, user_id: str, glob: GlobalState, request_id: str, partition: int
    ) -> int:
        """Close one window: queue its samples, return how many. A window whose close raises has its
        impression dead-lettered and is dropped from the user's state (a crash here would
        come back to the same window after every restart). `close` builds the samples
        before it counts anything, so what raises leaves the counts as they were."""
        pending = user["pending"][request_id]
        if self.owners[partition].get(request_id) == user_id:
            del self.owners[partition][request_id]
        try:
            impression = self.opened.get(partition, {}).pop((user_id, request_id), None) or \
                Impression.model_validate_json(pending["impression"])
            samples = close_json(user, glob, impression, self.cfg)
        except Exception as exc:
            log.exception("closing %s of partition %d raised; its impression is dead-lettered",
                          request_id, partition)
            user["pending"].pop(request_id, None)
            self.stats["processing_error"] += 1
            source = Source(self.topics.impressions, partition, pending.get("offset", -1),
                            user_id.encode(), pending.get("impression", "").encode())
            self._reject(source, "processing_error", "<event>",
                         f"at close: {type(exc).__name__}: {exc}")
            return 0
        key = impression.user_id.encode()  # keyed by user, partitioned as Faust's producer would
        for sample in samples:
            self.out.add(self.topics.samples, key, sample)
        return len(samples)

    def _reject(self, source: Source, reason: str, field: str, detail: str) -> None:
        """Dead-letter the raw bytes unchanged; where they came from and why in headers."""
        self.stats["dead_letters"] += 1
        value, limit = source.value, self.cfg.max_event_bytes
        truncated = value is not None and len(value) > limit
        if truncated:  # an oversized record plus headers could pass the broker's limit
            value = (value or b"")[:limit]
        letter = DeadLetter(reason=reason, field=field, detail=detail, stage="streams",
                            source_topic=source.topic, source_partition=source.partition,
                            source_offset=source.offset, truncated=truncated)
        # Sent with the batch's samples, before the batch is acknowledged (handle_batch).
        self.out.add(self.topics.dlq, source.key, value, headers=letter.headers())

    # -- the deadline index is derived state, rebuilt from the table ---------------------
    async def _ensure_index(self, partition: int) -> None:
        """Before a partition's first event: its state from the changelog, then the
        derived index (deadlines, open request ids, persisted watermark)."""
        if partition in self.deadlines:
            return
        if not self.state.has(partition):
            await self.state.recover(partition)
        heap: list[tuple[int, str, str]] = []
        owners: dict[str, str] = {}
        for key, state in self.state.items(partition):
            if key.startswith("u:") and state:
                heap.extend((deadline, rid, key[2:]) for deadline, rid in deadlines(state))
                owners.update(dict.fromkeys(state["pending"], key[2:]))
        heapq.heapify(heap)
        self.deadlines[partition] = heap
        self.owners[partition] = owners
        glob: GlobalState | None = self.state.get(partition, f"g:{partition}")
        self.floor[partition] = glob.get("watermark", 0) if glob else 0
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
        if events and self.stats["batches"]:
            per_event = "  ".join(f"{stage} {1e6 * seconds / events:.0f}"
                                  for stage, seconds in self.timings.items())
            wall = "  ".join(f"{stage} {1e6 * seconds / events:.0f}"
                             for stage, seconds in self.wall.items())
            log.info("streams profile: CPU µs per event in handle_batch: %s; wall µs per event: "
                     "%s; %.0f events and %.1f state writes per batch", per_event, wall,
                     events / self.stats["batches"],
                     self.stats["state_writes"] / self.stats["batches"])

    def forget(self, partitions: set[int]) -> None:
        """Drop derived state of partitions this worker no longer owns."""
        for partition in partitions:
            for topic in (self.topics.impressions, self.topics.feedback):
                self.positions.pop((topic, partition), None)
                self.committed.pop((topic, partition), None)
            self.deadlines.pop(partition, None)
            self.owners.pop(partition, None)
            self.opened.pop(partition, None)
            self.floor.pop(partition, None)
            self.seen.pop(partition, None)
            self.state.drop(partition)


class InlineEngine:
    """The `Processor` in Faust's own event loop (`[streams] engine = "inline"`): what the
    app's timers and rebalance hooks ask of it, answered in place (the same questions as
    `streams.engine.EngineProcess`, whose child answers them with this class)."""

    def __init__(self, processor: Processor) -> None:
        self.processor = processor

    async def caught_up(self, partitions: list[int], highwater: Mapping[TP, int | None]
                        ) -> list[int]:
        return await confirmed_caught_up(self.processor, self.processor.kafka, partitions,
                                         highwater.get)

    async def forget(self, partitions: set[int]) -> None:
        self.processor.forget(partitions)

    def report(self, partitions: list[int]) -> None:
        self.processor.report(partitions)

    async def stop(self) -> None:
        await self.processor.out.stop()


class _StageClock:
    """Adds the event loop thread's CPU time since the previous lap to `timings[stage]`
    and the wall time to `wall[stage]` (the worker's own profile, logged with the progress
    line; CPU, so a busy machine does not inflate it; wall, to show the waits)."""

    def __init__(self, timings: dict[str, float], wall: dict[str, float]) -> None:
        self.timings, self.wall = timings, wall
        self.last, self.last_wall = time.thread_time(), time.monotonic()

    def lap(self, stage: str) -> None:
        now, now_wall = time.thread_time(), time.monotonic()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
        self.wall[stage] = self.wall.get(stage, 0.0) + now_wall - self.last_wall
        self.last, self.last_wall = now, now_wall


async def confirmed_caught_up(processor: Processor, kafka: KafkaConfig, partitions: list[int],
                              highwater: Callable[[TP], int | None]) -> list[int]:
    """The partitions whose every source record up to the broker's end is handled.

    The consumer's highwater is only as fresh as its last fetch, and Faust stops fetching
    while the agent's buffer is full, so by itself it can say "caught up" seconds after
    newer records arrived; a tick stamped with the wall clock would then make those
    records late (measured: 2,744 of 46,000 live impressions dead-lettered at 3,000
    events/s on a saturated worker). So the consumer's answer is confirmed against the
    end offsets read from the broker *after* the caller noted the time it stamps on the
    tick: every record produced before that time is below those ends.
    """
    unknown = [p for p in partitions if processor.caught_up(p, highwater) is None]
    if unknown:
        committed = await asyncio.to_thread(committed_offsets, kafka, processor.cfg.app_id,
                                            set(unknown))
        processor.committed.update(committed or {})
    candidates = [p for p in partitions if processor.caught_up(p, highwater)]
    if not candidates:
        return []
    topics = (kafka.topics.impressions, kafka.topics.feedback)
    reported = {TP(t, p): highwater(TP(t, p)) or 0 for t in topics for p in candidates}
    try:
        ends = await true_end_offsets(kafka.client_kwargs(), reported)
    except Exception as exc:  # the broker is restarting: no tick this time
        log.warning("cannot confirm the end offsets for a tick: %s", exc)
        return []
    return [p for p in candidates if processor.caught_up(p, lambda tp: ends.get(tp))]


def source_of(event: faust.types.EventT[Any]) -> Source:
    message = event.message
    timestamp = int(message.timestamp * 1000) if message.timestamp else None
    return Source(message.topic, message.partition, message.offset, event.key, event.value,
                  timestamp)


def _state_order(key: str) -> int:
    """The partition's record (`g:`) before its users' within a batch: module docstring."""
    return 0 if key.startswith("g:") else 1


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


# The cyclic garbage collector's thresholds in the worker process (CPython's: 700, 10, 10).
# A batch allocates tens of tracked objects per event (parsed events, state copies, sample
# rows) and the process keeps every user's state, so at 700 the collector ran every few
# events and its older generations kept re-walking the growing state: ≈ 30-40 µs of the
# ≈ 140 µs per event `bench.worker_cpu` measured (issue 12). The state is trees of dicts
# and lists, so almost everything is freed by reference counting anyway; what cycles there
# are (Faust's, asyncio's) are still collected, a little later. The youngest generation
# every 1,000,000 rather than 100,000: what a collection walks is what survived since the
# last one (the batch's new state), so ten times fewer collections walk little more each:
# measured with gc.callbacks over 40,000 events in `bench.worker_cpu`'s setting, the young
# collections took 2.7-3.3 µs per event at 100,000 and 0.1 at 1,000,000.
GC_THRESHOLDS = (1_000_000, 20, 10)


def tune_gc() -> None:
    """The worker process's collector settings: what exists once the app is built (modules,
    the app) is collected once, then moved out of the collector's reach (`gc.freeze`), and
    the collector runs every `GC_THRESHOLDS[0]` net allocations instead of every 700."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(cfg: StreamsConfig, kafka: KafkaConfig, *, user_id_key: bytes | None = None,
               pii: PiiPolicy | None = None, loglevel: str = "warning") -> ToolrecApp:
    """Build the Faust app; `faust.Worker(app).execute_from_commandline()` runs it. With
    `user_id_key`, events from producers that skipped the entry points' protection are
    pseudonymized and redacted (`pii`) before anything is stored (`Processor._protect`)."""
    app = ToolrecApp(
        cfg.app_id,
        broker=kafka.faust_broker_url(),
        broker_credentials=kafka.faust_credentials(),
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
    )
    app.kafka_config = kafka
    ticks = app.topic(ticks_topic_name(cfg), partitions=kafka.partitions, **RAW_BYTES)
    source = app.topic(
        kafka.topics.impressions, kafka.topics.feedback, ticks_topic_name(cfg), **RAW_BYTES
    )
    engine: InlineEngine | EngineProcess
    if cfg.engine == "process":
        from streams.engine import EngineProcess  # it imports this module

        engine = EngineProcess(cfg, kafka, user_id_key=user_id_key, pii=pii, loglevel=loglevel)
    else:
        engine = InlineEngine(Processor(app, cfg, kafka, user_id_key=user_id_key, pii=pii))
        app.processor = engine.processor  # type: ignore[attr-defined]

    @app.agent(source, name="calibrate")
    async def calibrate(stream: faust.StreamT[bytes]) -> None:
        assert isinstance(stream, faust.Stream)  # take_events is not on the StreamT protocol
        if isinstance(engine, InlineEngine):
            async for events in stream.take_events(cfg.batch_max_events,
                                                   within=cfg.batch_within_s):
                await engine.processor.handle_batch([source_of(event) for event in events])
        else:
            await engine.run(stream)

    def assigned() -> list[int]:
        return sorted(tp.partition for tp in app.consumer.assignment()
                      if tp.topic == kafka.topics.impressions)

    # faust types app.timer's decorator as a bare Callable.
    @app.timer(interval=cfg.tick_interval_s)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        started = now_ms()  # before the end offsets are read: see `confirmed_caught_up`
        partitions = assigned()
        highwater = {TP(topic, p): app.consumer.highwater(TP(topic, p))
                     for topic in (kafka.topics.impressions, kafka.topics.feedback)
                     for p in partitions}
        for partition in await engine.caught_up(partitions, highwater):
            await ticks.send(value=json.dumps({"ts": started}).encode(), partition=partition,
                             force=True)

    # faust types app.timer's decorator as a bare Callable.
    @app.timer(interval=cfg.stats_interval_s)  # type: ignore[untyped-decorator]
    async def report() -> None:
        engine.report(assigned())

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def on_shutdown(app: ToolrecApp, **_: Any) -> None:
        await engine.stop()  # every batch awaited its outputs: nothing is pending

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: ToolrecApp, revoked: set[TP], **_: Any) -> None:
        await engine.forget({tp.partition for tp in revoked
                             if tp.topic == kafka.topics.impressions})

    tune_gc()
    return app
