"""Faust's own floor on the worker's topics: an agent that only iterates them.

    python -m bench.faust_floor --bootstrap 127.0.0.1:PORT --events N [--group G]

Runs a Faust app with the worker's transport and the worker's batching
(`stream.take_events`, `streams.batch_max_events` / `batch_within_s`) whose agent does
nothing with the events, reads N events from the beginning of the impressions and feedback
topics, prints one JSON line `{"events": N, "seconds": s, "events_per_s": r}` and exits.
`bench.pipeline` compares the worker against it in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import faust

from streams.app import ToolrecApp
from streams.config import StreamsConfig
from toolrec.kafka import KafkaConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--group", default=f"bench-faust-floor-{uuid.uuid4().hex[:8]}")
    args = parser.parse_args()
    kafka, cfg = KafkaConfig(bootstrap_servers=args.bootstrap), StreamsConfig()
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
                continue
            seen += len(events)
            total += len(events)
            if total >= args.events:
                seconds = time.perf_counter() - first
                print(json.dumps({"events": total, "seconds": round(seconds, 3),
                                  "events_per_s": round(seen / seconds, 1)}), flush=True)
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
