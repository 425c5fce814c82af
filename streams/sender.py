"""The worker's output path: a batch's records sent with aiokafka's batch API.

The worker writes ≈ 3 records per event (samples, state, sometimes a dead letter). Through
a producer's `send` each record costs its own coroutine, future and accumulator append
(≈ 20–40 µs here); appended to one `BatchBuilder` per topic partition and sent with
`send_batch`, a record costs a few µs (issue 12). `flush` returns once the broker has
acknowledged every record added since the last flush, and raises if it refused any, so the
worker can order its writes (samples before state, `streams.app`) and never acknowledge a
batch whose outputs are not on the broker.

A record without an explicit partition goes where aiokafka's (and so Faust's) default
partitioner would put its key (murmur2), so samples stay partitioned by user as before.
Imports only aiokafka and toolrec.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

# Under the broker's 1 MB message limit (DESIGN.md §5), with room for the batch header.
MAX_BATCH_BYTES = 512 * 1024
# Remembered key → partition answers (aiokafka's murmur2 is pure Python, ≈ 5.5 µs a key);
# bounded, since keys come from clients: the cache is dropped when it reaches this size.
PARTITION_CACHE_KEYS = 100_000
# The headers of a record queued without any (aiokafka only reads them): shared, not a new
# list per record.
_NO_HEADERS: list[tuple[str, bytes]] = []


class BatchSender:
    """Queues records (`add`); `flush` sends them as one batch per topic partition and
    waits for the broker."""

    def __init__(self, client_kwargs: Mapping[str, Any]) -> None:
        self._client_kwargs = client_kwargs
        self._producer: Any = None  # made in `start`: aiokafka needs the running loop
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._partition_cache: dict[tuple[str, bytes | None], int] = {}
        self._queue: list[tuple[str, int | None, bytes | None, bytes | None,
                                list[tuple[str, bytes]]]] = []

    async def start(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(**self._client_kwargs, acks="all",
                                        max_batch_size=MAX_BATCH_BYTES)
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def add(self, topic: str, key: bytes | None, value: bytes | None, *,
            partition: int | None = None, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Queue one record for the next `flush`."""
        self._queue.append((topic, partition, key, value,
                            list(headers) if headers else _NO_HEADERS))

    def pending(self) -> int:
        return len(self._queue)

    async def flush(self) -> int:
        """Send what is queued, in queue order per topic partition, and wait until the
        broker acknowledged all of it; returns the number of records. Raises the broker's
        error if any batch failed (the records are then dropped from the queue: the
        caller stops, `streams.app`)."""
        queue, self._queue = self._queue, []
        if not queue:
            return 0
        builders: dict[tuple[str, int], list[Any]] = {}
        cached = self._partition_cache.get  # (≈ 4 records an event: no coroutine per record)
        for topic, partition, key, value, headers in queue:
            if partition is None:
                partition = cached((topic, key))
                if partition is None:
                    partition = await self._partition_of(topic, key)
            batches = builders.get((topic, partition))
            if batches is None:
                batches = builders[(topic, partition)] = [self._producer.create_batch()]
            if batches[-1].append(key=key, value=value, timestamp=None,
                                  headers=headers) is None:
                batches.append(self._producer.create_batch())
                if batches[-1].append(key=key, value=value, timestamp=None,
                                      headers=headers) is None:
                    raise ValueError(f"a record of {len(value or b'')} bytes for {topic} "
                                     f"does not fit a {MAX_BATCH_BYTES}-byte batch")
        futures = [await self._producer.send_batch(batch, topic, partition=partition)
                   for (topic, partition), batches in builders.items() for batch in batches]
        await asyncio.gather(*futures)
        return len(queue)

    async def _partition_of(self, topic: str, key: bytes | None) -> int:
        cached = self._partition_cache.get((topic, key))
        if cached is not None:
            return cached
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = sorted(await self._producer.partitions_for(topic))
            self._partitions[topic] = partitions
        if len(self._partition_cache) >= PARTITION_CACHE_KEYS:
            self._partition_cache.clear()
        partition = int(self._partitioner(key, partitions, partitions))
        if key is not None:  # keyless records are spread at random: never cached
            self._partition_cache[(topic, key)] = partition
        return partition
