"""Compatibility layer for tansu 0.6.0's wrong end offsets (DESIGN.md §5a).

tansu answers ListOffsets(LATEST) with the base offset of the last record batch + 1, which
is below the real end whenever that batch holds several records. Faust reads end offsets
("highwaters") to decide where changelog recovery stops, so a restarted worker would
recover only part of its tables. The Fetch response's high watermark is correct, so we
ask for it: a short-lived probe consumer fetches at the reported end of each partition
and we take the larger of the two numbers.

It is switched on only for `KafkaConfig(flavor="tansu")`: the Faust transport of
`streams.transport` (URL scheme `toolrec-tansu://`) calls `true_end_offsets`; other
clients may call it too. Against Apache Kafka nothing here runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)


async def true_end_offsets(
    client_kwargs: Mapping[str, Any],
    reported: Mapping[TopicPartition, int],
    *,
    timeout_s: float = 10.0,
) -> dict[TopicPartition, int]:
    """Correct `reported` end offsets with the high watermarks of real Fetch responses."""
    if not reported:
        return {}
    probe = AIOKafkaConsumer(
        **client_kwargs,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=1024,
        fetch_max_wait_ms=10,
    )
    await probe.start()
    try:
        tps = [TopicPartition(tp.topic, tp.partition) for tp in reported]
        probe.assign(tps)
        for tp, offset in zip(tps, reported.values(), strict=True):
            probe.seek(tp, max(offset, 0))
        await _fetch_until_highwaters(probe, tps, timeout_s)
        corrected = {
            tp: max(offset, probe.highwater(TopicPartition(tp.topic, tp.partition)) or 0)
            for tp, offset in reported.items()
        }
    finally:
        await probe.stop()
    changed = {tp: (reported[tp], end) for tp, end in corrected.items() if end != reported[tp]}
    if changed:
        log.info("tansu compat: corrected end offsets (reported, true): %s", changed)
    return corrected


async def _fetch_until_highwaters(
    probe: AIOKafkaConsumer, tps: list[TopicPartition], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while any(probe.highwater(tp) is None for tp in tps):
        if time.monotonic() > deadline:
            missing = [tp for tp in tps if probe.highwater(tp) is None]
            raise TimeoutError(f"no fetch response for {missing} within {timeout_s} s")
        await probe.getmany(*tps, timeout_ms=100)
        await asyncio.sleep(0)
