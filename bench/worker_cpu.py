"""In-process microbenchmark of the stream worker's CPU per event (issue 12); no broker.

    python -m bench.worker_cpu [--events 20000] [--rounds 3] [--baseline REF]
                               [--profile tottime|cumulative]

Feeds `streams.app.Processor.handle_batch` the events `bench.pipeline` produces (same
generator, pseudonymized ids, one record timestamp for all as if preloaded just before the
run), in batches of `streams.batch_max_events`, with the pipeline's window and key. Nothing
leaves the process: every partition's state starts assigned and empty (nothing to
recover), and the batch sender builds real aiokafka record batches for a producer that
acknowledges them at once; the process gets the worker's garbage-collector settings
(`streams.app.tune_gc`, where the tree has them). Prints the worker's own per-stage
profile (thread CPU µs per event, as its `streams profile` log line) and a digest of every
record it wrote (samples, dead letters, state), so two code versions can be compared for
identical output.

With `--baseline REF`, each round runs the same events once on the tree at git REF
(extracted with `git archive` into a temporary directory) and once on the working tree,
each in a fresh process, alternating; it prints the medians and the new/old ratio per
stage, and the fastest round of each side (on a loaded machine the steadier of the two).
`--profile` prints cProfile's top functions of one in-process run instead.
Every plain run also prints the same events through `ideal_loop` — the least any
pure-Python worker keeping the samples contract could do (parse, a dict per user, three
sample rows a window dumped and appended to a record batch, one state record per touched
user and batch; no validation, privacy checks, deadlines, watermark or dead letters) — and
the worker / ideal ratio, side by side in the same process.
Faust's own delivery cost (≈ 150 µs/event, `bench.faust_floor`) is not in these numbers,
and the heap is smaller than a real worker's (no Faust runtime), so the collector's share
is, if anything, smaller here.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import json
import logging
import os
import pickle
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The packages the worker imports: what `--baseline` extracts from the old commit.
TREE_PACKAGES = ("bench", "contracts", "generator", "infra", "streams", "toolrec")
Event = tuple[str, int, bytes, bytes, int]  # topic kind, partition, key, value, timestamp ms


def make_batches(n_events: int, users: int, partitions: int) -> list[Event]:
    """`bench.pipeline.make_events` with each record's partition (the producer's murmur2
    of the user key) and a timestamp as if the backlog was produced just now."""
    from aiokafka.partitioner import DefaultPartitioner

    from bench.pipeline import make_events

    now = int(time.time() * 1000)
    partitioner, ids = DefaultPartitioner(), list(range(partitions))
    return [(kind, int(partitioner(key, ids, ids)), key, value, now)
            for kind, key, value in make_events(n_events, users, now - 3 * 3600 * 1000,
                                                span_ms=2 * 3600 * 1000)]


class _AckingProducer:
    """What `streams.sender.BatchSender` uses of an AIOKafkaProducer; every batch is a real
    aiokafka `BatchBuilder`, acknowledged as soon as it is sent."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def create_batch(self) -> Any:
        from aiokafka.producer.message_accumulator import BatchBuilder

        from streams.sender import MAX_BATCH_BYTES

        return BatchBuilder(MAX_BATCH_BYTES, 0)  # 0: no compression, as the worker's

    async def partitions_for(self, topic: str) -> set[int]:
        return self.partitions

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _processor(partitions: int, records: list[tuple[Any, ...]]) -> Any:
    """A worker `Processor` with the pipeline's settings, its outputs appended to `records`."""
    from bench.pipeline import BENCH_KEY, LATENESS_S, WINDOW_S
    from streams.app import Processor
    from streams.config import StreamsConfig
    from streams.sender import BatchSender
    from toolrec.kafka import KafkaConfig

    class RecordingSender(BatchSender):
        def add(self, topic: str, key: bytes | None, value: bytes | None, *,
                partition: int | None = None, headers: Sequence[tuple[str, bytes]] = ()
                ) -> None:
            records.append((topic, key, value, partition, tuple(headers)))
            super().add(topic, key, value, partition=partition, headers=headers)

    cfg = StreamsConfig(attribution_window_s=WINDOW_S, allowed_lateness_s=LATENESS_S,
                        close_interval_s=0)  # close at every batch: same output every run
    kafka = KafkaConfig(partitions=partitions)
    processor = Processor(None, cfg, kafka, user_id_key=BENCH_KEY.encode())  # type: ignore[arg-type]
    processor.out = RecordingSender(kafka.client_kwargs())
    processor.out._producer = _AckingProducer(partitions)
    for partition in range(partitions):
        processor.state.data[partition] = {}  # assigned, empty: nothing to recover
        for topic in (kafka.topics.impressions, kafka.topics.feedback):
            processor.committed[(topic, partition)] = 0
    return processor


async def _run(events: list[Event], partitions: int) -> dict[str, Any]:
    from streams.app import Source

    records: list[tuple[Any, ...]] = []
    processor = _processor(partitions, records)
    topics = {"impression": processor.topics.impressions, "feedback": processor.topics.feedback}
    offsets: dict[tuple[str, int], int] = {}
    sources = []
    for kind, partition, key, value, timestamp in events:
        offset = offsets[(kind, partition)] = offsets.get((kind, partition), -1) + 1
        sources.append(Source(topics[kind], partition, offset, key, value, timestamp))
    tune_gc = getattr(sys.modules["streams.app"], "tune_gc", None)
    if tune_gc is not None:  # the worker's collector settings (`create_app`), if the tree has them
        tune_gc()
    size = processor.cfg.batch_max_events
    started = time.thread_time()
    for first in range(0, len(sources), size):
        await processor.handle_batch(sources[first:first + size])
    total = time.thread_time() - started
    digest = hashlib.sha256(repr(records).encode()).hexdigest()[:16]  # not pickle: it shares
    per_event = {stage: 1e6 * seconds / len(events) for stage, seconds in processor.timings.items()}
    return {"n": len(events), "total": 1e6 * total / len(events), **per_event,
            "samples": processor.stats["samples"], "dead_letters": processor.stats["dead_letters"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "digest": digest}


def ideal_loop(events: list[Event], batch_size: int) -> float:
    """µs of thread CPU per event of the idealized worker loop (module docstring): every
    impression closes in its own batch, with the calibration formula's arithmetic only."""
    from aiokafka.producer.message_accumulator import BatchBuilder
    from pydantic_core import from_json, to_json

    from streams.sender import MAX_BATCH_BYTES

    users: dict[bytes, dict[str, Any]] = {}
    builder = BatchBuilder(MAX_BATCH_BYTES, 0)

    def send(key: bytes, value: bytes) -> None:
        nonlocal builder
        if builder.append(key=key, value=value, timestamp=None) is None:
            builder = BatchBuilder(MAX_BATCH_BYTES, 0)
            builder.append(key=key, value=value, timestamp=None)

    started = time.thread_time()
    for first in range(0, len(events), batch_size):
        touched: dict[bytes, dict[str, Any]] = {}
        opened: list[tuple[bytes, dict[str, Any]]] = []
        for kind, _, key, value, _ in events[first:first + batch_size]:
            event = from_json(value)
            user = users.get(key) or users.setdefault(key, {"shown": 0.0, "clicks": 0.0,
                                                            "pending": {}})
            if kind == "impression":
                user["pending"][event["request_id"]] = {"clicks": [], "raw": value.decode()}
                opened.append((key, event))
            elif (pending := user["pending"].get(event["request_id"])) is not None:
                pending["clicks"].append(event["position"])
            touched[key] = user
        for key, event in opened:
            user = users[key]
            clicks = user["pending"].pop(event["request_id"])["clicks"]
            ctr = (user["clicks"] + 20 * 0.3) / (user["shown"] + 20)
            prompt = event["prompt"]
            for suggestion in event["suggestions"]:
                clicked = suggestion["position"] in clicks
                w_activity = min(max((ctr / 0.3) ** (-0.5 if clicked else 0.5), 0.25), 4.0)
                w_tool = 2.0 if clicked and suggestion["tool_id"] else 1.0
                completion = suggestion["text"] + "<|im_end|>"
                send(key, to_json({
                    "schema": "sample/1", "sample_id": f"{event['request_id']}:"
                    f"{suggestion['position']}", "request_id": event["request_id"],
                    "event_id": event["event_id"], "user_id": event["user_id"],
                    "session_id": event["session_id"], "impression_ts": event["ts"],
                    "closed_ts": event["ts"] + 2500, "model_version": event["model_version"],
                    "template_version": event["template_version"], "prompt": prompt,
                    "completion": completion, "position": suggestion["position"],
                    "n_shown": len(event["suggestions"]), "clicked": clicked,
                    "executed": False, "explored": False, "tool_id": suggestion["tool_id"],
                    "is_tool_query": suggestion["tool_id"] is not None,
                    "user_impressions": user["shown"], "user_clicks": user["clicks"],
                    "user_ctr": ctr, "global_ctr": 0.3, "w_activity": w_activity,
                    "w_tool": w_tool, "w_position": 1.0,
                    "weight": min(max(w_activity * w_tool, 0.1), 10.0)}))
                prompt += completion
            user["shown"] += len(event["suggestions"])
            user["clicks"] += len(clicks)
        for key, user in touched.items():
            send(key, to_json(user))
    return 1e6 * (time.thread_time() - started) / len(events)


def measure(events: list[Event], partitions: int) -> dict[str, Any]:
    """One run over `events` in this process: µs of thread CPU per event by stage."""
    return asyncio.run(_run(events, partitions))


def worker_and_ideal(events: list[Event], partitions: int) -> tuple[dict[str, Any], float]:
    """One `measure` of the worker and `ideal_loop`'s thread CPU µs per event over the same
    `events`, in this process (a plain round; `bench.pipeline --budget worker,ideal`)."""
    from streams.config import StreamsConfig

    result = measure(events, partitions)
    return result, ideal_loop(events, StreamsConfig().batch_max_events)


def _child(tree: Path, events_file: Path, partitions: int) -> dict[str, Any]:
    """`measure` in a fresh process whose imports resolve to `tree` first."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(events_file), "--partitions", str(partitions)],
        env=env, cwd=tree, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the run on {tree} failed ({out.returncode}):\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _extract(ref: str, into: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "archive", ref, *TREE_PACKAGES], cwd=repo, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def _line(name: str, result: dict[str, Any]) -> str:
    stages = "  ".join(f"{k} {v:.1f}" for k, v in result.items()
                       if k not in ("n", "samples", "dead_letters", "peak_rss_mb", "digest"))
    return (f"{name}: µs/event {stages}  (samples {result['samples']}, dead letters "
            f"{result['dead_letters']}, peak RSS {result['peak_rss_mb']:.0f} MB, output digest "
            f"{result['digest']})")


def compare(ref: str, events: list[Event], partitions: int, rounds: int) -> None:
    """Alternate old (`ref`) and new (working tree) runs; print medians and ratios."""
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="toolrec-bench-worker-") as tmp:
        old_tree = Path(tmp) / "old"
        old_tree.mkdir()
        _extract(ref, old_tree)
        events_file = Path(tmp) / "events.pickle"
        events_file.write_bytes(pickle.dumps(events))
        runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
        for round_ in range(rounds):
            for name, tree in (("old", old_tree), ("new", repo)):
                runs[name].append(_child(tree, events_file, partitions))
                print(f"round {round_ + 1} " + _line(name, runs[name][-1]), flush=True)
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]
                      if k not in ("digest",)} for name, rs in runs.items()}
    for stage in medians["new"]:
        if stage in ("n", "samples", "dead_letters", "peak_rss_mb"):
            continue
        old, new = medians["old"].get(stage, 0.0), medians["new"][stage]
        ratio = f"{new / old:.2f}" if old else "n/a"
        print(f"median {stage:>8}: old {old:7.1f}  new {new:7.1f} µs/event  new/old {ratio}")
    # On a loaded machine (another job on the cores) a run's CPU time grows with the cache
    # and frequency it loses; the fastest round of each side is the steadier comparison.
    fastest = {name: min(r["total"] for r in rs) for name, rs in runs.items()}
    print(f"fastest    total: old {fastest['old']:7.1f}  new {fastest['new']:7.1f} µs/event  "
          f"new/old {fastest['new'] / fastest['old']:.2f}")
    print(f"median peak RSS: old {medians['old']['peak_rss_mb']:.0f} MB  "
          f"new {medians['new']['peak_rss_mb']:.0f} MB")
    same = {r["digest"] for r in runs["old"]} == {r["digest"] for r in runs["new"]}
    print(f"identical output (samples, dead letters, state records): {same}")


def profile(events: list[Event], partitions: int, sort: str) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    result = measure(events, partitions)
    profiler.disable()
    print(_line("profiled", result))
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats(sort).print_stats(45)
    print(text.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="REF", help="compare against this git ref")
    parser.add_argument("--profile", choices=("tottime", "cumulative"),
                        help="cProfile one run, functions sorted by this")
    parser.add_argument("--json", action="store_true", help="one round; print only "
                        '`{"worker": µs, "ideal": µs}` (thread CPU per event)')
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # events file
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)  # a failing batch logs why, then exits 75
    if args.child:
        print(json.dumps(measure(pickle.loads(args.child.read_bytes()), args.partitions)))
        return
    events = make_batches(args.events, args.users, args.partitions)
    if args.json:
        result, ideal = worker_and_ideal(events, args.partitions)
        print(json.dumps({"worker": result["total"], "ideal": ideal}))
        return
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} at start; "
          f"{args.events} events, {args.users} users, {args.partitions} partitions")
    if args.profile:
        profile(events, args.partitions, args.profile)
    elif args.baseline:
        compare(args.baseline, events, args.partitions, args.rounds)
    else:
        for _ in range(args.rounds):
            result, ideal = worker_and_ideal(events, args.partitions)
            print(_line("run", result), flush=True)
            print(f"ideal: µs/event {ideal:.1f}   (`ideal_loop`, same events, same process; "
                  f"worker / ideal {result['total'] / ideal:.1f})", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]  # run by path (`_child`): bench/generator.py would shadow `generator`
    main()
