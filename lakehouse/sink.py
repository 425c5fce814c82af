"""The Kafka → Delta sink: `toolrec.samples` → `samples`, impressions + feedback → `events`.

Exactly-once in effect, without Kafka transactions:
- the consumer is *assigned* every partition (no group join: DESIGN.md §5b/c) and starts
  where the table says: each table records, per topic partition, the next offset to
  consume as a Delta application transaction committed atomically with the rows
  (`DeltaAppender`), so a crash between two commits replays exactly the uncommitted range;
- rows are de-duplicated on `sample_id` / `event_id` against the table, because the
  streams stage is at-least-once and may emit one sample twice at two offsets;
- records that do not parse go to `toolrec.dlq` (raw bytes unchanged, reason and source
  coordinates in headers, `contracts.dlq` as in the streams stage) and are acknowledged by
  the broker before the commit that records their offsets; the sink goes on;
- micro-batches flush per table at `batch_max_rows` records, `batch_max_bytes` or after
  `batch_max_seconds` (records that do not fit wait for the next batch),
  whichever comes first; SIGTERM / `stop_event` flushes what was consumed, then exits.

Throughput (`python -m bench.sink`): three stages overlap — the event loop fetches (aiokafka
decodes records there), one parser thread turns the previous fetch into columns (samples
through Arrow's JSON reader, `lakehouse.fastparse`, in chunks of `_FAST_PATH_CHUNK` records
and the rest at the flush, whatever size the fetches have; events through their pydantic
contract),
and a commit thread de-duplicates and appends the previous batch; `SinkStats.cpu` holds the
CPU seconds of each stage.

Committed offsets are also sent to the consumer group `lake.group_id`, best effort, so lag
dashboards work; resuming never reads them. End offsets are never used (tansu's are wrong).

A topic that was recreated (or truncated) under the sink restarts below the offset a table
records as consumed: its log ends below it (the high watermark of a fetch response) or the
consumer falls back to the start of the log and hands over lower offsets. The sink stops
with a `LakeError` then, instead of dropping those records as replays: the operator
decides, and re-ingests the new topic by setting `lake.sink_app_id` to a new value (rows
already in the table stay; equal keys are dropped as duplicates). A recreated topic that
has already grown past the recorded offset cannot be told apart this way (Kafka's topic
ids are not exposed by the client).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition
from pydantic import ValidationError as PydanticValidationError

from contracts.dlq import DeadLetter
from contracts.events import Feedback, Impression, Sample, parse_event, protect_untrusted
from contracts.privacy import PiiPolicy
from lakehouse.config import LakeConfig
from lakehouse.fastparse import FastParser
from lakehouse.tables import RowBuffer, contract_schema, spec_of
from lakehouse.writer import AppendResult, DeltaAppender
from toolrec.durable import now_ms
from toolrec.errors import LakeError, ValidationError
from toolrec.kafka import KafkaConfig

__all__ = ["CommitInfo", "Sink", "SinkStats", "TableName", "run_sink"]

log = logging.getLogger(__name__)

TableName = Literal["samples", "events"]
_FAST_PATH_MIN_RECORDS = 8  # below this the per-record path is as fast
# The fast path parses a table's records once this many wait (and the rest at its flush):
# one parse call costs ≈ 4 ms of vectorized checks whatever its size, so a live stream's
# fetches of a hundred records a partition paid ≈ 50 µs a row, 2,000 at once ≈ 10-15.
_FAST_PATH_CHUNK = 2000
ALL_TABLES: tuple[TableName, ...] = ("samples", "events")
Fetched = dict[TopicPartition, list[ConsumerRecord]]  # records per partition, in offset order


@dataclass(frozen=True)
class CommitInfo:
    """One flush of one table, handed to `on_commit` (the benchmark records these)."""

    table: str
    version: int | None
    records: int  # Kafka records covered (rows + duplicates + DLQ)
    rows: int
    duplicates: int
    files: int
    seconds: float  # time spent in the Delta append
    committed_at: float  # time.time()
    bytes: int = 0  # of the Kafka record values covered


@dataclass
class SinkStats:
    """Counters of one sink run."""

    records: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ALL_TABLES, 0))
    duplicates: int = 0
    replayed: int = 0
    dlq: int = 0
    commits: int = 0
    files: int = 0
    commit_seconds: float = 0.0
    # CPU seconds per stage (thread time): fetch, parse, build, then the writer's steps
    cpu: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0

    @property
    def rows_total(self) -> int:
        return sum(self.rows.values())

    def charge(self, stage: str, seconds: float) -> None:
        self.cpu[stage] = self.cpu.get(stage, 0.0) + seconds

    def rate(self) -> float:
        """Kafka records handled per second since the start."""
        return self.records / max(time.monotonic() - self.started, 1e-9)


@dataclass(frozen=True)
class _Route:
    """Records of one topic are `model` events and become rows of `table`."""

    table: TableName
    model: type[Any]


class _Buffer:
    """What one table consumed since its last commit."""

    def __init__(self, name: str) -> None:
        self.rows = RowBuffer(spec_of(name))
        self.offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset
        self.dlq: list[tuple[ConsumerRecord, ValidationError]] = []
        self.records = 0
        self.bytes = 0  # of record values
        self.closed = False  # a record did not fit: flush now, the rest goes to the next
        self.first_at: float | None = None
        # records noted but not parsed yet (`Sink._ingest`), runs of one partition each
        self.unparsed: list[tuple[TopicPartition, list[ConsumerRecord]]] = []
        self.unparsed_records = 0

    def note(self, tp: TopicPartition, records: list[ConsumerRecord], size: int) -> None:
        """Add `records` of `tp`, `size` bytes of values."""
        self.records += len(records)
        self.bytes += size
        self.offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
        if self.first_at is None:
            self.first_at = time.monotonic()

    def fitting(self, config: LakeConfig, records: list[ConsumerRecord]) -> tuple[int, int]:
        """How many of `records` (a prefix) this batch still takes, and their bytes: up to
        `batch_max_rows` records and `batch_max_bytes` bytes, and always one record into an
        empty batch."""
        left_records = max(config.batch_max_rows - self.records, 0)
        left_bytes = config.batch_max_bytes - self.bytes
        head = records[:left_records]
        total = sum(len(r.value) for r in head if r.value is not None)
        if total <= left_bytes:
            return len(head), total  # the usual case: no per-record walk
        n = taken = 0
        for record in head:
            size = _size(record)
            if taken + size > left_bytes and (n or self.records):
                break
            n, taken = n + 1, taken + size
        return n, taken

    def due(self, config: LakeConfig, now: float) -> bool:
        if self.records == 0:
            return False
        if self.closed or self.records >= config.batch_max_rows:
            return True
        if self.bytes >= config.batch_max_bytes:
            return True
        return self.first_at is not None and now - self.first_at >= config.batch_max_seconds


def _size(record: ConsumerRecord) -> int:
    return len(record.value) if record.value is not None else 0


class Sink:
    """One sink process: one consumer over the sink's topics, one writer per table."""

    def __init__(
        self,
        lake: LakeConfig,
        kafka: KafkaConfig,
        *,
        tables: Iterable[TableName] = ALL_TABLES,
        stop_event: threading.Event | None = None,
        on_commit: Callable[[CommitInfo], None] | None = None,
        idle_exit_s: float | None = None,
        user_id_key: bytes | None = None,
        pii: PiiPolicy | None = None,
    ) -> None:
        self.lake = lake
        # With a key, events from producers that skipped the entry points' protection are
        # pseudonymized and redacted before a row holds them (`protect_untrusted`).
        self.user_id_key, self.pii = user_id_key, pii
        self.kafka = kafka
        self.tables = tuple(dict.fromkeys(tables))
        for name in self.tables:
            if name not in ALL_TABLES:
                raise LakeError(f"the sink writes {ALL_TABLES}, not {name!r}")
        self.stop_event = stop_event or threading.Event()
        self.on_commit = on_commit
        self.idle_exit_s = idle_exit_s
        self.stats = SinkStats()
        topics = kafka.topics
        routes = {
            topics.samples: _Route("samples", Sample),
            topics.impressions: _Route("events", Impression),
            topics.feedback: _Route("events", Feedback),
        }
        self.routes = {t: r for t, r in routes.items() if r.table in self.tables}
        self.writers = {name: DeltaAppender(lake, name) for name in self.tables}
        self.fast_parsers: dict[TableName, FastParser] = (
            {"samples": FastParser(Sample, contract_schema("samples"))}
            if "samples" in self.tables and lake.fast_path
            else {}
        )
        self.buffers: dict[TableName, _Buffer] = {name: _Buffer(name) for name in self.tables}
        self.flushing: dict[TableName, asyncio.Future[None]] = {}
        self.positions: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._group_commits = lake.group_id is not None
        self._parser = ThreadPoolExecutor(1, thread_name_prefix="lake-sink-parse")
        self._parsing: asyncio.Future[None] | None = None  # the parse in flight

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self) -> SinkStats:
        """Consume until stopped (or idle for `idle_exit_s`), flushing as batches fill."""
        consumer = self._consumer = self._new_consumer()
        try:
            await consumer.start()
        except KafkaConnectionError as exc:
            await consumer.stop()
            raise LakeError(
                f"the sink cannot reach Kafka at {self.kafka.bootstrap_servers}: {exc}; start "
                "a broker (`toolrec infra broker up`) or set kafka.bootstrap_servers"
            ) from exc
        try:
            await self._assign(consumer)
            await self._consume(consumer)
            await self._flush_all(force=True)
        finally:
            await self._close()
        self.stats.elapsed = time.monotonic() - self.stats.started
        return self.stats

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **self.kafka.client_kwargs(),
            group_id=self.lake.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=self.kafka.fetch_max_wait_ms(),
            client_id=f"toolrec-lake-sink-{'-'.join(self.tables)}",
        )

    async def _close(self) -> None:
        if self._parsing is not None:  # stopped by a failure: its outcome is not needed
            await asyncio.gather(self._parsing, return_exceptions=True)
        pending = [f for f in self.flushing.values() if not f.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()
        if self._consumer is not None:
            await self._consumer.stop()
        self._parser.shutdown(wait=True)

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        """Assign every partition of the sink's topics, positioned where Delta says."""
        tps = await self._partitions(consumer)
        consumer.assign(tps)
        loop = asyncio.get_running_loop()
        for tp in tps:
            writer = self.writers[self.routes[tp.topic].table]
            offset = await loop.run_in_executor(
                None, writer.recorded_offset, (tp.topic, tp.partition)
            )
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
                self.positions[tp] = offset  # a record below it means the log restarted
            log.info("sink: %s[%d] resumes at %s", tp.topic, tp.partition, offset or "start")

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        deadline = time.monotonic() + self.lake.topic_wait_seconds
        while True:
            await consumer.topics()  # refreshes metadata
            found = {t: consumer.partitions_for_topic(t) for t in self.routes}
            missing = sorted(t for t, parts in found.items() if not parts)
            if not missing:
                return [TopicPartition(t, p) for t, parts in found.items() for p in sorted(parts)]
            if time.monotonic() > deadline or self.stop_event.is_set():
                raise LakeError(
                    f"topics {missing} do not exist on {self.kafka.bootstrap_servers} after "
                    f"{self.lake.topic_wait_seconds:.0f} s; create them (`toolrec infra topics`"
                    " or the streams worker) or raise lake.topic_wait_seconds"
                )
            await asyncio.sleep(0.5)

    # -- the loop ----------------------------------------------------------------------
    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        last_record = time.monotonic()
        last_log = last_record
        carry: Fetched = {}
        while not self.stop_event.is_set():
            if carry:  # records that did not fit the batches just flushed
                fetched, carry = carry, {}
            else:
                fetched = await self._fetch(consumer)
            now = time.monotonic()
            first = self.stats.records == 0
            batches, carry = self._take(fetched)
            if batches:
                if first:
                    log.info("sink: consuming (first records from %s)", sorted(map(str, batches)))
                last_record = now
                await self._parse_behind(batches)
            await self._flush_all(force=False)
            if now - last_log >= 10.0:
                self._log_progress()
                last_log = now
            if self.idle_exit_s is not None and now - last_record >= self.idle_exit_s:
                log.info("sink: idle for %.1f s, stopping", self.idle_exit_s)
                break

    async def _parse_behind(self, batches: Fetched) -> None:
        """Parse `batches` in the parser thread while the loop fetches (and aiokafka decodes)
        the next ones: one parse in flight, so memory stays bounded. Their buffers already
        hold their offsets (`_take`); `_start_flush` waits for the parse before a commit."""
        await self._parsed()
        self._parsing = asyncio.get_running_loop().run_in_executor(
            self._parser, self._ingest_all, batches
        )

    async def _parsed(self) -> None:
        parsing, self._parsing = self._parsing, None
        if parsing is not None:
            await parsing

    async def _fetch(self, consumer: AIOKafkaConsumer) -> Fetched:
        room = self.lake.batch_max_rows - max(b.records for b in self.buffers.values())
        cpu = time.thread_time()
        fetched = await consumer.getmany(timeout_ms=200, max_records=max(room, 1))
        self.stats.charge("fetch", time.thread_time() - cpu)
        self._check_highwaters(consumer)
        return {tp: records for tp, records in fetched.items() if records}

    def _take(self, fetched: Fetched) -> tuple[Fetched, Fetched]:
        """Split `fetched` into what the open batches take (`_Buffer.fitting`, in order per
        partition) and what waits for the next round, after full batches are flushed: so a
        commit never holds more than `batch_max_rows` records or `batch_max_bytes` bytes."""
        taken: Fetched = {}
        carry: Fetched = {}
        for tp, records in fetched.items():
            self._check_not_rewound(tp, records[0].offset)
            buffer = self.buffers[self.routes[tp.topic].table]
            n, size = buffer.fitting(self.lake, records)
            if n:
                taken[tp] = records[:n]
                buffer.note(tp, taken[tp], size)
                self.stats.records += n
                self.positions[tp] = records[n - 1].offset + 1
            if n < len(records):
                carry[tp] = records[n:]
                buffer.closed = True
        return taken, carry

    def _check_highwaters(self, consumer: AIOKafkaConsumer) -> None:
        """A log that ends below what a table records as consumed was recreated (a fetch
        response's high watermark is right even where a broker's end offsets are not)."""
        for tp, expected in self.positions.items():
            end = consumer.highwater(tp)
            if end is not None and end < expected:
                self._rewound(tp, end, expected)

    def _check_not_rewound(self, tp: TopicPartition, first: int) -> None:
        """Offsets only move forward here (seeks go forward too): a record below the next
        expected offset means the topic was recreated or truncated under the sink."""
        expected = self.positions.get(tp)
        if expected is not None and first < expected:
            self._rewound(tp, first, expected)

    def _rewound(self, tp: TopicPartition, found: int, expected: int) -> None:
        table = self.routes[tp.topic].table
        raise LakeError(
            f"{tp.topic}[{tp.partition}] restarts at offset {found}, below offset {expected} "
            f"that table {table!r} records as consumed under lake.sink_app_id="
            f"{self.lake.sink_app_id!r}: the topic was recreated or truncated. Nothing was "
            "written. To ingest the new topic, set lake.sink_app_id to a new value (rows "
            "already in the table stay; equal keys are dropped as duplicates)"
        )

    def _ingest_all(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batches.items():
            self._charged("parse", self._ingest, tp, records)

    def _charged(self, stage: str, work: Callable[..., None], *args: Any) -> None:
        """`work(*args)`, its thread CPU time charged to `stage`."""
        cpu = time.thread_time()
        try:
            work(*args)
        finally:
            self.stats.charge(stage, time.thread_time() - cpu)

    def _ingest(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        route = self.routes[tp.topic]
        buffer = self.buffers[route.table]
        if route.table in self.fast_parsers:
            buffer.unparsed.append((tp, records))
            buffer.unparsed_records += len(records)
            if buffer.unparsed_records >= _FAST_PATH_CHUNK:
                self._parse_unparsed(route.table, buffer)
            return
        self._ingest_each(route, buffer, tp, records)

    def _parse_unparsed(self, name: TableName, buffer: _Buffer) -> None:
        """Parse the records `buffer` holds unparsed in one fast-path call; those it is not
        sure of (and all of them when they are few) take the per-record path."""
        held, count = buffer.unparsed, buffer.unparsed_records
        buffer.unparsed, buffer.unparsed_records = [], 0
        if count < _FAST_PATH_MIN_RECORDS:
            for tp, records in held:
                self._ingest_each(self.routes[tp.topic], buffer, tp, records)
            return
        flat = [record for _, records in held for record in records]
        table, accepted, slow = self.fast_parsers[name].parse(
            [record.value for record in flat], max_bytes=self.lake.max_record_bytes
        )
        first = 0  # where each held run starts in `flat`; `accepted`, `slow` are ascending
        for tp, records in held:
            end = first + len(records)
            lo, hi = bisect.bisect_left(accepted, first), bisect.bisect_left(accepted, end)
            if hi > lo:
                rows = [flat[i] for i in accepted[lo:hi]]
                buffer.rows.add_arrow(
                    table.slice(lo, hi - lo),
                    topic=tp.topic,
                    partition=tp.partition,
                    offsets=[r.offset for r in rows],
                    timestamps=[r.timestamp for r in rows],
                )
            unsure = slow[bisect.bisect_left(slow, first):bisect.bisect_left(slow, end)]
            if unsure:
                self._ingest_each(self.routes[tp.topic], buffer, tp, [flat[i] for i in unsure])
            first = end

    def _ingest_each(
        self, route: _Route, buffer: _Buffer, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> None:
        """The per-record path: the contract's model validates each record (failures go to
        the DLQ with the field and reason); the Kafka coordinates are added in bulk."""
        rows = buffer.rows
        valid: list[ConsumerRecord] = []
        key = self.user_id_key if route.table == "events" else None
        for record in records:
            try:
                model = self._parse(route, record.value)
            except ValidationError as exc:
                buffer.dlq.append((record, exc))
                continue
            raw = record.value
            if key is not None:  # an impression or feedback (`_parse` checked the model)
                protected = protect_untrusted(model, key, self.pii)
                if protected is not model:
                    model, raw = protected, protected.to_json_bytes()
            rows.add_row(model, raw=raw)
            valid.append(record)
        rows.add_sources(
            tp.topic, tp.partition, offsets=[r.offset for r in valid],
            timestamps=[r.timestamp for r in valid],
        )  # fmt: skip

    def _parse(self, route: _Route, raw: bytes | None) -> Any:
        """The contract's model validates straight from JSON (its validator, without the
        `model_validate_json` wrapper); failures are re-parsed by the contract's
        `parse_event` to name the field and the DLQ reason."""
        if raw is None:
            raise ValidationError("<event>", "malformed_json", "empty record (tombstone)")
        if len(raw) > self.lake.max_record_bytes:
            raise ValidationError(
                "<event>", "oversized", f"{len(raw)} bytes > limit {self.lake.max_record_bytes}"
            )
        try:
            return route.model.__pydantic_validator__.validate_json(raw)
        except PydanticValidationError:
            pass
        event = parse_event(raw, max_bytes=self.lake.max_record_bytes)  # raises the precise error
        raise ValidationError(
            "schema",
            "unexpected_schema",
            f"a {type(event).__name__} on a topic of {route.model.__name__} events",
        )

    # -- flushing ----------------------------------------------------------------------
    async def _flush_all(self, *, force: bool) -> None:
        for future in self.flushing.values():
            if future.done():
                future.result()  # a failed commit stops the sink; its offsets stay unrecorded
        now = time.monotonic()
        for name, buffer in self.buffers.items():
            if buffer.records and (force or buffer.due(self.lake, now)):
                await self._start_flush(name)
        if force:
            pending = [f for f in self.flushing.values() if not f.done()]
            for future in pending:
                await future

    async def _start_flush(self, name: TableName) -> None:
        """Hand the table's buffer to a background commit (one in flight per table)."""
        previous = self.flushing.get(name)
        if previous is not None:
            await previous  # commits of one table stay in order
        await self._parsed()  # the buffer's rows are complete…
        buffer, self.buffers[name] = self.buffers[name], _Buffer(name)
        if buffer.unparsed:  # …once what waits for the fast path is parsed too
            await asyncio.get_running_loop().run_in_executor(
                self._parser, self._charged, "parse", self._parse_unparsed, name, buffer
            )
        await self._dead_letter(buffer.dlq)
        self.flushing[name] = asyncio.ensure_future(self._commit(name, buffer))

    async def _commit(self, name: TableName, buffer: _Buffer) -> None:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, self._write, name, buffer)
        self._account(name, buffer, result)
        await self._after_commit(result)

    def _write(self, name: TableName, buffer: _Buffer) -> AppendResult:
        """Build the batch's Arrow table and append it (in a worker thread)."""
        cpu = time.thread_time()
        rows = buffer.rows.to_table(ingest_ts=now_ms())
        self.stats.charge("build", time.thread_time() - cpu)
        return self.writers[name].append(rows, offsets=buffer.offsets)

    def _account(self, name: str, buffer: _Buffer, result: AppendResult) -> None:
        stats = self.stats
        stats.rows[name] += result.rows_written
        stats.duplicates += result.duplicates
        stats.replayed += result.replayed
        stats.dlq += len(buffer.dlq)
        stats.commits += result.version is not None
        stats.files += result.files_added
        stats.commit_seconds += result.seconds
        for step, seconds in result.cpu.items():
            stats.charge(step, seconds)
        if result.replayed:
            log.warning(
                "%s: dropped %d records whose offsets the table already records: another sink "
                "wrote them, or the topic was recreated (then set lake.sink_app_id anew)",
                name,
                result.replayed,
            )
        if self.on_commit is not None:
            self.on_commit(
                CommitInfo(
                    name,
                    result.version,
                    buffer.records,
                    result.rows_written,
                    result.duplicates,
                    result.files_added,
                    result.seconds,
                    time.time(),
                    buffer.bytes,
                )
            )

    async def _after_commit(self, result: AppendResult) -> None:
        """Skip ranges another writer already committed; report progress to the group."""
        assert self._consumer is not None
        for (topic, partition), offset in result.recorded.items():
            tp = TopicPartition(topic, partition)
            if offset > self.positions.get(tp, 0):
                self._consumer.seek(tp, offset)
                self.positions[tp] = offset
        if self._group_commits and result.recorded:
            offsets = {
                TopicPartition(t, p): OffsetAndMetadata(o, "")
                for (t, p), o in result.recorded.items()
            }
            try:
                await asyncio.wait_for(self._consumer.commit(offsets), timeout=5.0)
            except Exception as exc:  # lag reporting only: never stop the sink for it
                log.warning("sink: group offset commit failed (%s); lag reporting is off", exc)
                self._group_commits = False

    async def _dead_letter(self, bad: list[tuple[ConsumerRecord, ValidationError]]) -> None:
        """Send bad records to the DLQ and wait for the broker's ack (before the commit that
        records their offsets). Raw bytes, headers of `contracts.dlq.DeadLetter`."""
        if not bad:
            return
        producer = await self._dlq_producer()
        sends = []
        for record, error in bad:
            value = record.value
            truncated = value is not None and len(value) > self.lake.max_record_bytes
            if truncated:
                value = value[: self.lake.max_record_bytes]  # keep the DLQ under size limits
            letter = DeadLetter(reason=error.reason, field=error.field, detail=str(error),
                                stage="lakehouse", source_topic=record.topic,
                                source_partition=record.partition, source_offset=record.offset,
                                truncated=truncated)
            sends.append(
                await producer.send(
                    self.kafka.topics.dlq, key=record.key, value=value, headers=letter.headers()
                )
            )
        await asyncio.gather(*sends)
        log.info("sink: %d bad records sent to %s", len(bad), self.kafka.topics.dlq)

    async def _dlq_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                **self.kafka.client_kwargs(), acks="all", enable_idempotence=False, linger_ms=5
            )
            await self._producer.start()
        return self._producer

    def _log_progress(self) -> None:
        s = self.stats
        log.info(
            "sink: %d records (%.0f/s), rows %s, %d duplicates, %d dlq, %d commits; "
            "cpu s per 10k rows %s",
            s.records,
            s.rate(),
            s.rows,
            s.duplicates,
            s.dlq,
            s.commits,
            cpu_profile(s.cpu, s.rows_total),
        )


def cpu_profile(stages: dict[str, float], rows: int) -> str:
    """CPU seconds per stage as seconds per 10k rows, the costliest first."""
    per_10k = 10_000 / max(rows, 1)
    return "  ".join(f"{stage}={seconds * per_10k:.3f}"
                     for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1]))


def run_sink(
    lake: Any,
    kafka: KafkaConfig | None = None,
    *,
    tables: Iterable[TableName] = ALL_TABLES,
    stop_event: threading.Event | None = None,
    on_commit: Callable[[CommitInfo], None] | None = None,
    idle_exit_s: float | None = None,
    handle_signals: bool = False,
    user_id_key: bytes | None = None,
    pii: PiiPolicy | None = None,
) -> SinkStats:
    """Run the sink until `stop_event` is set (or SIGTERM/SIGINT with `handle_signals`, or
    `idle_exit_s` without records); flush, then return its counters. Blocking.

    Pass `(settings.lake, settings.kafka)` or the whole `Settings` alone."""
    if kafka is None:
        lake, kafka = lake.lake, lake.kafka
    if not isinstance(lake, LakeConfig) or not isinstance(kafka, KafkaConfig):
        raise LakeError(
            f"run_sink needs a LakeConfig and a KafkaConfig (or Settings), got "
            f"{type(lake).__name__} and {type(kafka).__name__}; pass "
            "(settings.lake, settings.kafka)"
        )
    stop = stop_event or threading.Event()
    sink = Sink(
        lake, kafka, tables=tables, stop_event=stop, on_commit=on_commit,
        idle_exit_s=idle_exit_s, user_id_key=user_id_key, pii=pii,
    )

    async def main() -> SinkStats:
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
        return await sink.run()

    return asyncio.run(main())
