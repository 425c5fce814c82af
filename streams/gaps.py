"""Source records Faust skipped: detect the gap, read the records back from the broker.

faust-streaming 0.15 can skip source records when table recovery or a rebalance races
with prefetching (faust-streaming#596, #216): the agent is handed offset 42 and then 65
of a partition, and Faust's commit treats the gap as handled, so a SIGKILLed and
restarted worker silently lost impressions (tests/streams/test_faults.py caught it about
once in six runs). The worker therefore checks that the source offsets it is handed are
contiguous and, when they are not, reads the missing range itself and processes it
first. A gap can also be legitimate (transaction markers, compaction): reading it then
yields no records and nothing happens.

Imports only aiokafka and toolrec; the Faust worker (`streams.app`) uses it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from toolrec.errors import StreamError


def skipped_range(handled: int | None, committed: int | None, offset: int) -> range:
    """Offsets that come before `offset` but were never handed to the worker.

    `handled` is the last offset handled in this assignment (None before the first); then
    the group's `committed` offset is where Faust should have started. A replayed offset
    (at or below what was handled) is no gap; neither is a start at the committed offset.
    """
    if handled is not None:
        return range(handled + 1, offset) if offset > handled + 1 else range(0)
    if committed is not None and offset > committed:
        return range(committed, offset)
    return range(0)


async def read_range(
    client_kwargs: Mapping[str, Any],
    topic: str,
    partition: int,
    offsets: range,
    *,
    timeout_s: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of `topic[partition]` with offsets in `offsets`, in offset order.

    Raises StreamError if the broker does not deliver up to the range's end in time: the
    worker must then stop rather than commit past records it has not seen.
    """
    if not offsets:
        return []
    tp = TopicPartition(topic, partition)
    reader = AIOKafkaConsumer(
        **client_kwargs, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        reader.assign([tp])
        reader.seek(tp, offsets.start)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while await reader.position(tp) < offsets.stop:
            if time.monotonic() > deadline:
                raise StreamError(
                    f"could not re-read {topic}[{partition}] offsets {offsets.start}.."
                    f"{offsets.stop - 1} within {timeout_s} s"
                )
            batch = await reader.getmany(tp, timeout_ms=200, max_records=len(offsets))
            records += [r for r in batch.get(tp, []) if r.offset in offsets]
        return records
    finally:
        await reader.stop()
