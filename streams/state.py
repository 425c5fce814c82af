"""The worker's state: one in-memory map per source partition, backed by a changelog topic.

Faust's `Table` writes one changelog record per assignment through its per-message
machinery (≈ 170 µs a write here, issue 12), and it cannot be written from a `take()`
batch (there is no current event). This store is the same idea, owned by us:

- keys and values live in memory per partition; `stage` records a change in the current
  batch without touching the committed view, `commit` makes a batch's changes visible and
  hands one record per changed key to the worker's batch sender (`streams.sender`), to
  changelog partition = source partition, so one changelog partition orders every write of
  a source partition, as the worker's ordering rules need (`streams.app`);
- `recover` rebuilds a partition from its changelog (last record of a key wins, a
  tombstone deletes it), read to the true end offset (tansu's ListOffsets is wrong,
  `infra.compat`), before the worker handles the partition's first event.

Records are the same as Faust's table wrote (JSON-string keys `"u:<user>"`, JSON values,
topic `<app_id>-state-changelog`), so `toolrec privacy forget` tombstones them as before.
There are no standby replicas: a partition taken over is recovered from its changelog
(the recovery time is logged); measured, standbys cost a second worker 45 % of its rate
by replaying the peer's changelog through Faust's per-message path (issue 12).

Imports only aiokafka helpers of `streams.gaps`, `infra.compat` and pydantic-core's JSON.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aiokafka.structs import TopicPartition
from pydantic_core import from_json, to_json

from infra.compat import true_end_offsets
from streams.gaps import read_range

log = logging.getLogger(__name__)

Send = Callable[[str, bytes, bytes | None, int], None]


def state_topic_name(app_id: str) -> str:
    return f"{app_id}-state-changelog"


class ChangelogState:
    """Per-partition key → JSON-able value maps with batched changelog writes."""

    def __init__(self, topic: str, client_kwargs: Mapping[str, Any]) -> None:
        self.topic = topic
        self.client_kwargs = client_kwargs
        self.data: dict[int, dict[str, Any]] = {}
        self.staged: dict[int, dict[str, Any]] = {}

    # -- reading and staging -------------------------------------------------------------
    def get(self, partition: int, key: str) -> Any:
        """The value as of this batch (staged changes first), or None."""
        staged = self.staged.get(partition)
        if staged is not None and key in staged:
            return staged[key]
        return self.data.get(partition, {}).get(key)

    def stage(self, partition: int, key: str, value: Any) -> None:
        """Set `key` in this batch; the caller must not mutate `value` afterwards."""
        self.staged.setdefault(partition, {})[key] = value

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        """The committed entries of `partition`."""
        return iter(self.data.get(partition, {}).items())

    def has(self, partition: int) -> bool:
        return partition in self.data

    # -- batches -------------------------------------------------------------------------
    def commit(self, send: Send, order: Callable[[str], int] | None = None) -> int:
        """Make the staged changes visible and hand them to `send` (topic, key, value,
        partition), in `order` of key within a partition (lowest first); returns how many
        records were handed over. The caller waits for the broker before it acknowledges
        the batch (`streams.app`)."""
        sent = 0
        for partition, changes in self.staged.items():
            live = self.data.get(partition)  # None: revoked during the batch (still sent)
            for key in sorted(changes, key=order) if order else changes:
                if live is not None:
                    live[key] = changes[key]
                send(self.topic, to_json(key), to_json(changes[key]), partition)
                sent += 1
        self.staged.clear()
        return sent

    # -- partitions ----------------------------------------------------------------------
    async def recover(self, partition: int) -> int:
        """Load `partition` from its changelog; returns the number of live keys."""
        started = time.monotonic()
        tp = TopicPartition(self.topic, partition)
        end = (await true_end_offsets(self.client_kwargs, {tp: 0})).get(tp, 0)
        live: dict[str, Any] = {}
        for record in await read_range(self.client_kwargs, self.topic, partition,
                                       range(0, end), timeout_s=max(30.0, end / 20_000)):
            if record.key is None:
                continue
            key = from_json(record.key)
            if record.value is None:
                live.pop(key, None)
            else:
                live[key] = from_json(record.value)
        self.data[partition] = live
        log.info("state partition %d recovered: %d keys from %d changelog records in %.2f s",
                 partition, len(live), end, time.monotonic() - started)
        return len(live)

    def drop(self, partition: int) -> None:
        """Forget a partition this worker no longer owns (recovered again if it returns)."""
        self.data.pop(partition, None)
        self.staged.pop(partition, None)
