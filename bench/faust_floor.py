"""Faust's own floor on the worker's topics: an agent that only iterates them.

    python -m bench.faust_floor --bootstrap 127.0.0.1:PORT --events N [--group G]
                                [--forward-from TOPIC --forward-to TOPIC [--burn-us U]]

Runs a Faust app with the worker's transport and the worker's batching
(`stream.take_events`, `streams.batch_max_events` / `batch_within_s`) whose agent does
nothing with the events, reads N events from the beginning of the impressions and feedback
topics, prints one JSON line `{"events": N, "seconds": s, "events_per_s": r}` and exits.
`bench.pipeline` compares the worker against it in the same run.

With `--forward-from`, the agent is the bound of any worker that keeps the samples
contract: it computes nothing, but delivers the worker's real output — the records of the
`--forward-from` topic (a worker's samples for these events, loaded before it starts; below
`--forward-until`'s offsets, when the topic also holds later samples),
spread evenly over the events — to `--forward-to` with the worker's batch sender, flushed
per batch as the worker does. It prints `{"first": t}` (epoch s) when its first batch
arrives, so `bench.pipeline` can time it through a sink into Delta. `--burn-us U` spends U µs
of CPU per event in each batch before forwarding it, as a worker computing that much would:
`bench.pipeline --budget` turns it into the pipeline's rate as a function of the worker's
own CPU per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import faust

from streams.app import ToolrecApp
from streams.config import StreamsConfig
from streams.gaps import read_range
from streams.sender import BatchSender
from toolrec.kafka import KafkaConfig

Record = tuple[int, bytes | None, bytes | None]  # partition, key, value


def load_records(kafka: KafkaConfig, topic: str,
                 until: dict[int, int] | None = None) -> list[Record]:
    """Every record of `topic` (below the offsets `until`, partition → end, when given),
    partition after partition (the order within one is kept)."""
    from bench.pipeline import end_offsets

    async def read(ends: dict[int, int]) -> list[Record]:
        records: list[Record] = []
        for partition, end in sorted(ends.items()):
            records += [(partition, r.key, r.value) for r in await read_range(
                kafka.client_kwargs(), topic, partition, range(0, end), timeout_s=300)]
        return records

    return asyncio.run(read(until if until is not None else end_offsets(kafka, topic)))


class Forwarder:
    """Sends `records` in proportion to the events seen (all of them by `n_events`)."""

    def __init__(self, kafka: KafkaConfig, topic: str, records: list[Record],
                 n_events: int, burn_us: float = 0.0) -> None:
        self.topic, self.records, self.n_events = topic, records, n_events
        self.burn_us = burn_us
        self.sender: Any = BatchSender(kafka.client_kwargs())
        self.sent = self.events = 0

    async def forward(self, events_so_far: int) -> None:
        await self.sender.start()
        busy_until = time.thread_time() + self.burn_us * (events_so_far - self.events) / 1e6
        self.events = events_so_far
        while time.thread_time() < busy_until:  # the CPU a worker would spend on the batch
            pass
        due = min(len(self.records), len(self.records) * events_so_far // self.n_events)
        for partition, key, value in self.records[self.sent:due]:
            self.sender.add(self.topic, key, value, partition=partition)
        self.sent = due
        await self.sender.flush()


def _partition_ends(text: str) -> dict[int, int]:
    """`--forward-until`'s JSON (keys are strings in JSON) as partition → end offset."""
    return {int(partition): int(end) for partition, end in json.loads(text).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--group", default=f"bench-faust-floor-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--forward-from", help="a topic whose records the agent forwards")
    parser.add_argument("--forward-to", help="where it forwards them")
    parser.add_argument("--forward-until", type=_partition_ends, help="JSON partition → end "
                        "offset: forward only the records below these (the backlog's samples, "
                        "not those of a later live phase on the same topic)")
    parser.add_argument("--burn-us", type=float, default=0.0,
                        help="CPU µs per event spent before forwarding a batch")
    args = parser.parse_args()
    kafka, cfg = KafkaConfig(bootstrap_servers=args.bootstrap), StreamsConfig()
    forwarder = None
    if args.forward_from:
        forwarder = Forwarder(kafka, args.forward_to,
                              load_records(kafka, args.forward_from, args.forward_until),
                              args.events, args.burn_us)
    datadir = Path(tempfile.mkdtemp(prefix=f"{args.group}-data-"))  # Faust's; removed at exit
    app = ToolrecApp(args.group, broker=kafka.faust_broker_url(), web_enabled=False,
                     datadir=str(datadir),
                     consumer_auto_offset_reset="earliest", topic_partitions=kafka.partitions,
                     broker_session_timeout=cfg.session_timeout_s,
                     broker_heartbeat_interval=max(cfg.session_timeout_s / 6, 0.2))
    app.kafka_config = kafka
    source = app.topic(kafka.topics.impressions, kafka.topics.feedback, key_type=bytes,
                       value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen, first = 0, 0.0  # events after the first batch, and when that batch came

    @app.agent(source, name="floor")
    async def floor(stream: faust.StreamT[bytes]) -> None:
        nonlocal seen, first
        total = 0
        assert isinstance(stream, faust.Stream)
        async for events in stream.take_events(cfg.batch_max_events, within=cfg.batch_within_s):
            if not first:
                first, total = time.perf_counter(), len(events)
                if forwarder is not None:
                    print(json.dumps({"first": time.time()}), flush=True)
                    await forwarder.forward(total)
                continue
            seen += len(events)
            total += len(events)
            if forwarder is not None:
                await forwarder.forward(total)
            if total >= args.events:
                seconds = time.perf_counter() - first
                print(json.dumps({"events": total, "seconds": round(seconds, 3),
                                  "events_per_s": round(seen / seconds, 1)}), flush=True)
                if forwarder is not None:  # stay, so the caller can read this process's CPU
                    await asyncio.Event().wait()
                logging.shutdown()
                shutil.rmtree(datadir, ignore_errors=True)
                os._exit(0)  # the measurement is done; no need to leave the group politely

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.spinner = None  # see streams.cli: the spinner's DEBUG root handler costs time
    sys.argv = sys.argv[:1]
    try:
        worker.execute_from_commandline()
    finally:
        shutil.rmtree(datadir, ignore_errors=True)


if __name__ == "__main__":
    main()
