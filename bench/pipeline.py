"""Pipeline benchmark: producer → Faust worker(s) → sink → Delta, against its floors.

    python -m bench.pipeline [--events 50000] [--users 10000] [--workers 1|2] [--budget US,…]

1. Preloads N events (impressions with 3 suggestions, ~0.3 feedback each; event times
   spread over two hours so windows close as the stream advances; ids pseudonymized with
   the run's key, as serving writes them) into a fresh local broker.
2. Ceiling: a bare aiokafka consumer reads the two topics; Faust floor: an agent that only
   iterates them with the worker's batching (`bench.faust_floor`), same run, the median of
   `--floor-runs` runs (one run swings by ±25 %).
3. Pipeline: the worker(s) and one sink work through the backlog. The worker stage is done
   when every sample is on the samples topic; the pipeline when every sample is in Delta.
   With `--workers 2` the worker stage runs again with two workers on a fresh group,
   samples topic and lake: `scale_out_ratio` = two workers' rate / one worker's.
4. Bound: the floor agent again, now forwarding the samples the worker wrote in step 3
   (it computes nothing, `bench.faust_floor --forward-from`), with the same sink into a
   fresh lake: what a worker that keeps the samples contract could reach at most on this
   machine. Its sink reads the backlog's events from a copy of the two topics made at
   preload (`BACKLOG_TOPICS`): the originals also hold step 6's live events by then, which
   would give the bound's sink more events-table rows than the pipeline's sink had (≈ 2.2×
   at the defaults) and understate the bound. Pipeline / bound is the share the worker's
   own computation leaves; bound / floor what delivery, sink and broker leave.
   `--budget 18,40,72` runs it again spending that many CPU µs per event before each batch
   is forwarded: the pipeline's rate as a function of the worker's own CPU per event
   (`pipeline_rate_by_worker_cpu`);
   `--budget ideal,worker` burns what `bench.worker_cpu` measures in this run for the
   idealized pure-Python loop and for the worker itself (in-process, a fresh process).
5. Sink: `bench.sink.measure_sink` drains the same samples again into a fresh lake.
6. Latency: live traffic at `--rate` events/s for `--live-seconds`; click → Delta for every
   click of that phase (the time its sample is readable in Delta after the click was sent;
   it includes the attribution window + lateness), split into stages at stamps the sample
   already carries (`Seen`, `STAGES`), and over time (`click_to_delta_timeline_s`, with the
   close stage's slope, `click_to_delta_trend`: a worker short of CPU trails further every
   second, and a short phase hides it). The
   stream flows on at the same rate for `--tail-seconds` more, so the measured clicks'
   windows close as in a steady stream, on event time; the tail's own clicks are reported
   apart (`click_to_delta_stream_end_s`): after them the stream stops and their windows
   close on the worker's wall-clock tick (without the tail, the last 2.5 s of clicks did,
   which put the tick into the p99: close p99 1.62 s in the last 5 s against 0.40–0.42 s
   before, at 1,500 events/s on 2026-12-04).
Prints one result per line: `pipeline_events_per_s`, `faust_floor_events_per_s`,
`ceiling_events_per_s`, `pipeline_bound_events_per_s`, `sink_rows_per_s`,
`click_to_delta_s p50=… p99=… max=… n=…`, its stages (`click_to_delta_stages_s`, p50/p99
per stage, and the stages of the slowest 1 %), the worker's watermark lag over the live
phase (`worker_watermark_lag_s`), peak RSS, CPU per 1k events by process (backlog and live
phases), the machine's bound at that CPU cost (`machine_bound_events_per_s`: cores / CPU
per event of worker, sink and broker), the worker's own per-stage profile, and with two
workers `scale_out_ratio` and the broker's CPU share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args
from urllib.parse import unquote

import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from deltalake import DeltaTable

from bench.sink import ceiling_rate
from contracts.events import pseudonymize
from infra.broker import LocalStack
from infra.compat import true_end_offsets
from infra.processes import stop_pid
from infra.topics import ensure_topics
from lakehouse.config import LakeConfig
from lakehouse.maintenance import history
from lakehouse.tables import table_uri
from streams.app import ensure_worker_topics
from streams.config import StreamsConfig
from streams.gaps import read_range
from streams.sender import BatchSender
from streams.state import state_topic_name
from toolrec.kafka import KafkaConfig

EVENTS_PER_IMPRESSION = 1.3  # an impression and, for ~30 % of them, a click
BENCH_KEY = "toolrec-bench-pipeline-key-not-a-secret"  # the run's pseudonym key (env below)
WINDOW_S, LATENESS_S = 2.0, 0.5
PROMPT = "<|im_start|>system\nSuggest follow-up queries.<|im_end|>\n" + "context " * 30
TEXTS = ["turn on battery saver", "what drains my battery", "set an alarm for 7"]
TOOLS = ["battery.saver.on", None, "clock.alarm.set"]
# click → Delta, cut at the stamps a sample carries (`stage_splits`): click sent → its
# window's deadline (`closed_ts`) → the worker sent the sample (its Kafka record time) →
# the sink built its batch (`ingest_ts`) → the Delta commit (commitInfo.timestamp) → the
# watcher read it (`watch_delta`'s poll).
STAGES = ("window", "close", "sink_batch", "commit", "watch")
SINK_PROFILE = "cpu s per 10k rows"  # the sink's progress line (`lakehouse.sink`)
# The backlog's events again, for the bound's sink (step 4): topic field → copy's name.
BACKLOG_TOPICS = {"impressions": "toolrec.impressions.backlog",
                  "feedback": "toolrec.feedback.backlog"}


def make_events(
    n_events: int, users: int, t0: int, span_ms: int, seed: int = 0, prefix: str = "b"
) -> list[tuple[str, bytes, bytes]]:
    """(kind, key, value) in production order; ~1.3 events per impression."""
    rng = random.Random(seed)
    key = BENCH_KEY.encode()
    pseudonyms = [pseudonymize(f"user{u}", key) for u in range(users)]
    n_impressions = int(n_events / EVENTS_PER_IMPRESSION)
    events: list[tuple[str, bytes, bytes]] = []
    for i in range(n_impressions):
        if len(events) >= n_events:
            break
        user, ts = pseudonyms[rng.randrange(users)], t0 + i * span_ms // n_impressions
        rid = pseudonymize(f"{prefix}{i}", key)
        events.append(("impression", user.encode(), json.dumps(impression(rid, user, ts)).encode()))
        if rng.random() < 0.3 and len(events) < n_events:
            click = feedback(rid, user, ts + 500, rng.choice((1, 2, 3)))
            events.append(("feedback", user.encode(), json.dumps(click).encode()))
    return events


def impression(rid: str, user: str, ts: int) -> dict[str, Any]:
    return {
        "schema": "impression/1", "event_id": f"e-{rid}", "request_id": rid, "user_id": user,
        "session_id": user, "ts": ts, "model_version": "m0", "template_version": "gqr-chatml-v1",
        "prompt": PROMPT, "query": "my battery is low", "context": {"battery": 12},
        "suggestions": [
            {"position": k + 1, "text": TEXTS[k], "tool_id": TOOLS[k]} for k in range(3)
        ],
        "decoding": {"temperature": 0.7, "explore": False},
    }  # fmt: skip


def feedback(rid: str, user: str, ts: int, position: int) -> dict[str, Any]:
    return {"schema": "feedback/1", "event_id": f"f-{rid}", "request_id": rid, "user_id": user,
            "ts": ts, "type": "click", "position": position, "success": None}  # fmt: skip


async def produce(kafka: KafkaConfig, events: list[tuple[str, bytes, bytes]]) -> float:
    topic = {"impression": kafka.topics.impressions, "feedback": kafka.topics.feedback}
    producer = AIOKafkaProducer(**kafka.client_kwargs(), linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for kind, key, value in events:
            pending.append(await producer.send(topic[kind], value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(events) / (time.perf_counter() - started)


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


def with_children(pid: int) -> list[int]:
    """`pid` and its live child processes (a worker with `engine = "process"` does its work
    in one: its CPU and memory are the worker's)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if ppid == pid:
            children.append(int(stat.parent.name))
    return [pid, *children]


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of `pid` and its children, summed (each one's own peak)."""
    kib = 0
    for status in proc_files(pid, "status"):
        kib += int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return kib / 1024


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds of a live process and (`children`) its live children
    (robust to a loaded machine, unlike wall time): fields 14 and 15 of /proc/<pid>/stat,
    in clock ticks."""
    ticks = 0
    for stat in proc_files(pid, "stat")[:None if children else 1]:
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_by_name(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU seconds of each process; a worker's engine process (`engine = "process"`) on a
    line of its own, `<name>.engine`."""
    cpu = {}
    for name, proc in procs.items():
        cpu[name] = cpu_seconds(proc.pid, children=False)
        engine = cpu_seconds(proc.pid) - cpu[name]
        if engine > 0:
            cpu[f"{name}.engine"] = engine
    return cpu


def proc_files(pid: int, name: str) -> list[str]:
    """/proc/<p>/<name> of `pid` and its children (`with_children`); a child that ended
    since it was listed is left out, `pid` itself must be there."""
    texts = []
    for member in with_children(pid):
        try:
            texts.append(Path(f"/proc/{member}/{name}").read_text())
        except OSError:
            if member == pid:
                raise
    return texts


def cpu_by_process(procs: dict[str, subprocess.Popen[bytes]], stack: LocalStack
                   ) -> dict[str, float]:
    """CPU seconds so far of the phase's processes, the broker and this one (the live
    traffic's producer and the Delta watcher)."""
    own = os.times()
    return {**cpu_by_name(procs), "broker": cpu_seconds(stack.broker.pid or 0),
            "bench": own.user + own.system}


PROGRESS = re.compile(r"\[(\S+ \S+)\].*streams: partitions=\[[^\]]*\] events=(\d+)")


def first_event_time(log: Path) -> float | None:
    """When the worker began handling events, from its progress lines (one per
    `stats_interval_s`, 1 s here, with ms timestamps): the first line that counts events,
    moved back by those events at the rate between it and the next line (at most 1 s, the
    interval; 1 s when there is no next line). The bound agent (`forward_bound`) reports
    its first batch itself; this is the worker's equivalent."""
    counted: list[tuple[float, int]] = []
    for line in log.read_text(errors="replace").splitlines():
        match = PROGRESS.match(line)
        if match and int(match.group(2)) > 0:
            stamp, ms = match.group(1).split(",")
            counted.append((time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
                            + int(ms) / 1000, int(match.group(2))))
            if len(counted) == 2:
                break
    if not counted:
        return None
    (t1, e1), rate = counted[0], 0.0
    if len(counted) == 2 and counted[1][1] > e1:
        rate = (counted[1][1] - e1) / (counted[1][0] - t1)
    return t1 - min(e1 / rate, 1.0) if rate else t1 - 1.0


def last_logged(log: Path, marker: str) -> str:
    """What follows `marker` on the last line of `log` that has it: the worker's per-stage
    profile (`streams.app.Processor.report`, "profile:"), the sink's ("cpu s per 10k rows")."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if marker in ln]
    return lines[-1].split(marker, 1)[1].strip() if lines else "(none logged)"


def delta_rows(lake: LakeConfig) -> int:
    try:
        actions = DeltaTable(table_uri(lake, "samples")).get_add_actions(flatten=True)
    except Exception:  # not created yet
        return 0
    return int(sum(actions.column("num_records").to_pylist()))


def topic_records(kafka: KafkaConfig, topic: str) -> int:
    return sum(end_offsets(kafka, topic).values())


def end_offsets(kafka: KafkaConfig, topic: str) -> dict[int, int]:
    tps = {TopicPartition(topic, p): 0 for p in range(kafka.partitions)}
    ends = asyncio.run(true_end_offsets(kafka.client_kwargs(), tps))
    return {tp.partition: end for tp, end in ends.items()}


def watermark_lags(kafka: KafkaConfig, changelog: str, since: dict[int, int]) -> list[float]:
    """For each write of a partition's state (`g:<partition>`, at every close batch and
    tick) on the worker's changelog after offsets `since`: its record time minus the
    watermark it holds, in s — how far the worker's event time trailed the clock there."""
    ends = end_offsets(kafka, changelog)
    lags: list[float] = []
    for partition, start in since.items():
        records = asyncio.run(read_range(kafka.client_kwargs(), changelog, partition,
                                         range(start, ends[partition]), timeout_s=120))
        for record in records:
            if record.key is not None and record.key.startswith(b'"g:') and record.value:
                watermark = json.loads(record.value).get("watermark")
                if watermark:
                    lags.append((record.timestamp - watermark) / 1000)
    return sorted(lags)


def wait_for(count: Any, expected: int, what: str, started: float, timeout_s: float,
             procs: dict[str, subprocess.Popen[bytes]]) -> float:
    """Poll `count()` until it reaches `expected`; a progress line every 10 s with rate and
    ETA. Returns the wall time it did. Stops if one of `procs` exited."""
    last_report, seen = time.time(), 0
    while seen < expected:
        dead = [name for name, proc in procs.items() if proc.poll() is not None]
        if dead:
            raise SystemExit(f"{dead} exited early; see the logs")
        if time.time() - started > timeout_s:
            raise SystemExit(f"timeout: {seen} of {expected} {what} after {timeout_s} s")
        time.sleep(0.25)
        seen = count()
        if time.time() - last_report > 10:
            rate = seen / (time.time() - started)
            eta = f"{(expected - seen) / rate:.0f} s" if rate > 0 else "unknown"
            print(f"  … {seen}/{expected} {what} ({rate:.0f}/s, eta {eta})", flush=True)
            last_report = time.time()
    return time.time()


@dataclass
class Live:
    """What the live phase measured."""

    splits: list[tuple[float, ...]]  # per click that arrived, seconds per stage of STAGES
    missing: int  # clicks whose sample never arrived
    cpu: dict[str, float] | None = None  # process → CPU seconds during the phase
    lags: list[float] | None = None  # the worker's watermark lag at each partition-state write
    sent: list[float] = field(default_factory=list)  # per split: s after the first click
    tail_splits: list[tuple[float, ...]] = field(default_factory=list)  # the tail's clicks
    events: int = 0  # events sent, tail included


@dataclass
class Phase:
    """One run of the worker stage (and the sink) over the backlog."""

    workers: int
    worker_rate: float  # events/s until every sample was on the samples topic
    pipeline_rate: float  # events/s until every sample was in Delta (0: not waited for)
    cpu: dict[str, float]  # process → CPU seconds during the phase
    rss: dict[str, float]
    profile: str
    live: Live
    recovery: str = ""
    sink_profile: str = ""  # the sink's CPU per stage over the phase, live part included
    # the samples topic's end offsets after the backlog, before any live traffic: what the
    # bound agent forwards (`forward_bound`; forwarding the live phase's samples as well
    # reached the backlog's row count at ≈ 45 % of its events and doubled the bound)
    backlog_ends: dict[int, int] = field(default_factory=dict)


ENGINES: tuple[str, ...] = get_args(StreamsConfig.model_fields["engine"].annotation)


def env_for(kafka: KafkaConfig, base: Path, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "TOOLREC_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "TOOLREC_KAFKA__TOPICS__SAMPLES": f"toolrec.samples.{name}",
        "TOOLREC_INFRA__STATE_DIR": str(base / "state"),
        "TOOLREC_LAKE__ROOT": str(base / f"lake-{name}"),
        "TOOLREC_LAKE__SINK_APP_ID": f"sink-{name}",
        "TOOLREC_STREAMS__APP_ID": f"worker-{name}",
        "TOOLREC_STREAMS__TELEMETRY__USER_ID_KEY": BENCH_KEY,
        "TOOLREC_STREAMS__ATTRIBUTION_WINDOW_S": str(WINDOW_S),
        "TOOLREC_STREAMS__ALLOWED_LATENESS_S": str(LATENESS_S),
        "TOOLREC_STREAMS__STATS_INTERVAL_S": "1",
        "TOOLREC_STREAMS__DATA_DIR": str(base / f"faust-{name}"),
    }


def phase_setup(kafka: KafkaConfig, base: Path, name: str) -> tuple[dict[str, str], str,
                                                                     LakeConfig]:
    """A phase's environment (`env_for`), its samples topic and lake, with the worker's
    topics created for its app id and samples topic."""
    env = env_for(kafka, base, name)
    topic, lake = env["TOOLREC_KAFKA__TOPICS__SAMPLES"], LakeConfig(root=env["TOOLREC_LAKE__ROOT"])
    ensure_worker_topics(StreamsConfig(app_id=env["TOOLREC_STREAMS__APP_ID"]),
                         kafka.model_copy(update={"topics": kafka.topics.model_copy(
                             update={"samples": topic})}))
    return env, topic, lake


def run_phase(stack: LocalStack, base: Path, name: str, n_events: int, samples: int,
              workers: int, args: argparse.Namespace, *, sink: bool, engine: str | None = None,
              live_too: bool = True) -> Phase:
    """`workers` workers (and, with `sink`, the sink and — `live_too` — the live latency
    phase and the recovery probe) on a fresh group, samples topic and lake over the
    backlog; `engine`: the workers' `[streams] engine` (None: `args.engine`, else the
    configured one)."""
    kafka = stack.kafka_config()
    env, topic, lake = phase_setup(kafka, base, name)
    env["TOOLREC_STREAMS__ENGINE"] = engine or engine_of(args)
    logs = [base / f"{name}-worker{i}.log" for i in range(workers)]
    started, broker_cpu = time.time(), cpu_seconds(stack.broker.pid or 0)
    procs = {f"worker{i}": spawn(["toolrec", "streams", "worker", "--loglevel", "info"], env, log)
             for i, log in enumerate(logs)}
    if sink:
        procs["sink"] = spawn(["toolrec", "lake", "sink"], env, base / f"{name}-sink.log")
    try:
        done = wait_for(lambda: topic_records(kafka, topic), samples, "samples on the topic",
                        started, args.timeout, procs)
        first = min((t for t in map(first_event_time, logs) if t), default=started)
        worker_rate = n_events / (done - first)
        backlog_ends = end_offsets(kafka, topic)
        pipeline_rate = 0.0
        if sink:
            in_delta = wait_for(lambda: delta_rows(lake), samples, "samples in Delta",
                                started, args.timeout, procs)
            pipeline_rate = n_events / (in_delta - first)
        cpu = cpu_by_name(procs)
        cpu["broker"] = cpu_seconds(stack.broker.pid or 0) - broker_cpu
        live = Live([], 0)
        if sink and live_too and args.live_seconds > 0:
            live = measure_live(stack, procs, lake, state_topic_name(
                env["TOOLREC_STREAMS__APP_ID"]), args)
        rss = {p: peak_rss_mb(proc.pid) for p, proc in procs.items()}
    finally:
        for proc in procs.values():
            stop_pid(proc.pid, timeout_s=20)
    recovery = measure_recovery(env, base / f"{name}-recovery.log", kafka.partitions) \
        if sink and live_too else ""
    sink_profile = last_logged(base / f"{name}-sink.log", SINK_PROFILE) if sink else ""
    return Phase(workers, worker_rate, pipeline_rate, cpu, rss, last_logged(logs[0], "profile:"),
                 live, recovery, sink_profile=sink_profile, backlog_ends=backlog_ends)


def measure_live(stack: LocalStack, procs: dict[str, subprocess.Popen[bytes]],
                 lake: LakeConfig, changelog: str, args: argparse.Namespace) -> Live:
    """The live phase (`live_latency`) with the CPU each process spent in it and the
    worker's watermark lag over it (`watermark_lags`, from its `changelog`)."""
    kafka = stack.kafka_config()
    start = end_offsets(kafka, changelog)
    # prepared before the CPU count starts: the JSON and pseudonyms are most of the load
    # generator's work, and none of it is the pipeline's
    seconds = args.live_seconds + args.tail_seconds
    prepared = live_impressions(int(seconds * args.rate / EVENTS_PER_IMPRESSION) + 1, args.users)
    before = cpu_by_process(procs, stack)
    live = live_latency(kafka, lake, args, prepared)
    live.cpu = {p: c - before[p] for p, c in cpu_by_process(procs, stack).items()}
    live.lags = watermark_lags(kafka, changelog, start)
    return live


RECOVERED = re.compile(r"state partition (\d+) recovered: (\d+) keys from (\d+) changelog "
                       r"records in ([\d.]+) s")


def measure_recovery(env: dict[str, str], log: Path, partitions: int,
                     timeout_s: float = 120) -> str:
    """A fresh worker of the same group takes every partition over from the changelog the
    phase left (no standby replicas): how long the state takes to load."""
    started = time.time()
    proc = spawn(["toolrec", "streams", "worker", "--loglevel", "info"], env, log)
    try:
        found: list[tuple[str, ...]] = []
        while len(found) < partitions and time.time() - started < timeout_s:
            time.sleep(0.5)
            found = RECOVERED.findall(log.read_text(errors="replace"))
        wall = time.time() - started
    finally:
        stop_pid(proc.pid, timeout_s=20)
    if len(found) < partitions:
        return f"incomplete: {len(found)} of {partitions} partitions in {timeout_s:g} s"
    keys, records = (sum(int(row[i]) for row in found) for i in (1, 2))
    loading = sum(float(row[3]) for row in found)
    return (f"{loading:.2f} s loading {keys} keys from {records} changelog records "
            f"({partitions} partitions); {wall:.1f} s from a worker's start to the last one")


@dataclass(frozen=True)
class Seen:
    """A sample's first sight in Delta (wall seconds) and the stamps it carries."""

    at: float  # the watcher read it
    closed: float  # its window's deadline (`closed_ts`, event time = wall time here)
    produced: float  # its Kafka record's timestamp: the worker's send
    built: float  # `ingest_ts`: the sink built the batch
    committed: float  # the Delta commit's commitInfo.timestamp


def stage_splits(sent: float, seen: Seen) -> tuple[float, ...]:
    """Seconds per stage of STAGES; they add up to `seen.at - sent`."""
    marks = (sent, seen.closed, seen.produced, seen.built, seen.committed, seen.at)
    return tuple(b - a for a, b in zip(marks, marks[1:], strict=False))


def live_latency(kafka: KafkaConfig, lake: LakeConfig, args: argparse.Namespace,
                 prepared: list[LiveImpression]) -> Live:
    """Live traffic of `prepared` at `args.rate` events/s (`produce_live`), Delta watched
    *while* it is produced; what it measured, by `split_live`."""
    seen: dict[str, Seen] = {}
    stop = threading.Event()
    start_version = table_version(lake)  # the backlog's commits: not watched
    watcher = threading.Thread(target=watch_delta, args=(lake, seen, stop, start_version),
                               daemon=True)
    watcher.start()
    try:
        traffic = asyncio.run(produce_live(kafka, prepared, args.rate, args.live_seconds,
                                           args.tail_seconds))
        deadline = time.time() + 60
        while not all(s in seen for s in traffic.sent_at) and time.time() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        watcher.join(10)
    return split_live(traffic, seen)


def split_live(traffic: LiveTraffic, seen: dict[str, Seen]) -> Live:
    """The stage splits of click → Delta for every click that arrived and when it was sent
    (s after the first click), the tail's clicks apart, and how many never arrived."""
    first = min(traffic.sent_at.values(), default=0.0)
    live = Live([], 0, events=traffic.events)
    for sample_id, sent in traffic.sent_at.items():
        if sample_id not in seen:
            live.missing += 1
        elif sample_id in traffic.tail:
            live.tail_splits.append(stage_splits(sent, seen[sample_id]))
        else:
            live.splits.append(stage_splits(sent, seen[sample_id]))
            live.sent.append(sent - first)
    return live


def table_version(lake: LakeConfig) -> int:
    """The samples table's version, -1 before it exists."""
    try:
        return int(DeltaTable(table_uri(lake, "samples")).version())
    except Exception:  # not created yet
        return -1


def watch_delta(lake: LakeConfig, seen: dict[str, Seen], stop: threading.Event,
                after: int = -1) -> None:
    """Record when each sample first became readable in the Delta table (the next commit's
    log entry appeared, looked for every `POLL_S`), with its stamps; commits up to version
    `after` are skipped. A commit's entry appears whole (written aside, then renamed into
    `_delta_log`), which is what a reader sees; asking delta-rs instead
    (`update_incremental`) cost 4.5 CPU-ms a poll even with nothing new, ≈ 0.1 of a core at
    20 polls/s taken from the pipeline it measures."""
    table_dir = Path(table_uri(lake, "samples"))
    while not stop.is_set():
        time.sleep(POLL_S)
        while (table_dir / "_delta_log" / f"{after + 1:020d}.json").exists():
            now = time.time()
            committed, paths = commit_entry(table_dir, after + 1)
            for path in paths:
                note_file(table_dir / path, committed, now, seen)
            after += 1


POLL_S = 0.02  # the watcher's sleep between two looks for the next commit


def commit_entry(table_dir: Path, version: int) -> tuple[float, list[str]]:
    """A commit's timestamp (s) and the relative paths of the files it added, from its log
    entry (a local table)."""
    committed, paths = 0.0, []
    for line in (table_dir / "_delta_log" / f"{version:020d}.json").read_text().splitlines():
        action = json.loads(line)
        if "commitInfo" in action:
            committed = action["commitInfo"].get("timestamp", 0) / 1000
        elif "add" in action:
            paths.append(unquote(action["add"]["path"]))
    return committed, paths


def note_file(path: Path, committed: float, now: float, seen: dict[str, Seen]) -> None:
    """`seen` each sample of the data file at `path` that it does not hold yet."""
    columns = ["sample_id", "closed_ts", "source_timestamp", "ingest_ts"]
    table = pq.read_table(path, columns=columns).to_pydict()
    for sample_id, closed, produced, built in zip(*(table[c] for c in columns), strict=True):
        if sample_id not in seen:
            seen[sample_id] = Seen(now, closed / 1000, (produced or 0) / 1000, built / 1000,
                                   committed)


TS_MARK = 987654321987654  # stands for an event time in a prepared event's JSON
# The live producer sends what is due every this long (serving's producers linger 10 ms):
# each round is a produce request per partition, which costs the broker and this process
# CPU that the pipeline's processes need (5 ms rounds: ≈ 0.2 cores each at 1,000 events/s).
LIVE_ROUND_S = 0.02


@dataclass(frozen=True)
class LiveImpression:
    """One impression of the live phase, prepared before it starts: its JSON around the
    event time (stamped when it is sent) and, when clicked, its click's the same way."""

    user: bytes
    body: tuple[bytes, bytes]
    click: tuple[bytes, bytes, str] | None  # JSON around its ts, sample id


def stamped(parts: tuple[bytes, ...], ts: int) -> bytes:
    return parts[0] + str(ts).encode() + parts[1]


def live_impressions(n: int, n_users: int) -> list[LiveImpression]:
    """The live phase's impressions (pseudonymized ids, ~30 % clicked), JSON prepared so
    that sending one costs the load generator almost no CPU: it shares the two cores with
    the pipeline it measures."""
    key, rng = BENCH_KEY.encode(), random.Random(1)
    users = [pseudonymize(f"live{u}", key) for u in range(n_users)]
    mark = str(TS_MARK).encode()
    prepared = []
    for i in range(n):
        rid, user = pseudonymize(f"live{i}", key), rng.choice(users)
        head, tail = json.dumps(impression(rid, user, TS_MARK)).encode().split(mark)
        click = None
        if rng.random() < 0.3:
            position = rng.choice((1, 2, 3))
            c_head, c_tail = json.dumps(feedback(rid, user, TS_MARK, position)).encode().split(
                mark)
            click = (c_head, c_tail, f"{rid}:{position}")
        prepared.append(LiveImpression(user.encode(), (head, tail), click))
    return prepared


@dataclass
class LiveTraffic:
    """What the live producer sent: when each click was handed to the producer (wall
    clock), which clicks belong to the tail, and how many events it sent in all."""

    sent_at: dict[str, float]  # sample id of each click → when it was sent
    tail: set[str]  # the clicks of impressions sent after the measured seconds
    events: int


async def produce_live(kafka: KafkaConfig, prepared: list[LiveImpression], rate: float,
                       seconds: float, tail_s: float) -> LiveTraffic:
    """`prepared` (enough of them) at `rate` events/s for `seconds` and then `tail_s` more,
    with event time = now, each click 0.5 s after its impression. The tail keeps the
    stream flowing at the same rate while the measured clicks' windows close, as in a
    steady stream: a window closes when events past its deadline arrive (or, on an idle
    partition, at the next wall-clock tick, which is what the tail's own last clicks
    meet)."""
    total_s = seconds + tail_s
    out = BatchSender(kafka.client_kwargs())  # one record batch per partition per round
    await out.start()
    clicks: deque[tuple[float, bytes, tuple[bytes, bytes, str], int]] = deque()
    traffic = LiveTraffic({}, set(), 0)
    started, i = time.time(), 0
    try:
        while (now := time.time()) < started + total_s or clicks:
            while now < started + total_s and i < (now - started) * rate / EVENTS_PER_IMPRESSION:
                event, ts = prepared[i], int(now * 1000)
                out.add(kafka.topics.impressions, event.user, stamped(event.body, ts))
                traffic.events += 1
                if event.click is not None:  # due 0.5 s later, its event time too
                    clicks.append((now + 0.5, event.user, event.click, ts + 500))
                    if now >= started + seconds:
                        traffic.tail.add(event.click[2])
                i += 1
            while clicks and clicks[0][0] <= now:
                _, user, click, ts = clicks.popleft()
                out.add(kafka.topics.feedback, user, stamped(click[:2], ts))
                traffic.events += 1
                traffic.sent_at[click[2]] = time.time()
            await out.flush()
            await asyncio.sleep(LIVE_ROUND_S)
    finally:
        await out.stop()
    return traffic


def dead_letter_reasons(kafka: KafkaConfig) -> Counter[str]:
    """Reasons of every record on the DLQ topic (the run's dead letters)."""
    async def read() -> Counter[str]:
        consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(kafka.topics.dlq, p) for p in range(kafka.partitions)]
            ends = await true_end_offsets(kafka.client_kwargs(), dict.fromkeys(tps, 0))
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            reasons: Counter[str] = Counter()
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    reasons.update(dict(r.headers).get("reason", b"?").decode() for r in records)
            return reasons
        finally:
            await consumer.stop()

    return asyncio.run(read())


def faust_floor(kafka: KafkaConfig, n_events: int) -> float:
    out = subprocess.run([sys.executable, "-m", "bench.faust_floor", "--bootstrap",
                          kafka.bootstrap_servers, "--events", str(n_events)],
                         capture_output=True, text=True, timeout=600, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["events_per_s"])


def faust_floors(kafka: KafkaConfig, n_events: int, runs: int) -> list[float]:
    """`runs` floor measurements, each on a fresh group, sorted: one run swings by ±25 %
    here (8,900–13,900 events/s on the same events), so the ratio uses their median."""
    return sorted(faust_floor(kafka, n_events) for _ in range(runs))


def forward_bound(stack: LocalStack, base: Path, n_events: int, samples: int,
                  backlog_ends: dict[int, int], args: argparse.Namespace, burn_us: float = 0.0
                  ) -> tuple[float, dict[str, float]]:
    """The pipeline's bound on this machine for any worker that keeps the samples contract:
    the floor agent forwarding phase "one"'s backlog samples (those below `backlog_ends`; it
    computes nothing, `bench.faust_floor --forward-from`; with `burn_us`, it spends that much
    CPU per event first) with the same sink into a fresh lake. Returns its events/s (first
    batch → every sample in Delta) and the CPU seconds per process."""
    kafka = stack.kafka_config()
    name = f"bound{burn_us:g}" if burn_us else "bound"
    env, topic, lake = phase_setup(kafka, base, name)
    sink_env = {**env, **{f"TOOLREC_KAFKA__TOPICS__{field.upper()}": copy
                          for field, copy in BACKLOG_TOPICS.items()}}
    log = base / f"{name}-agent.log"
    started, broker_cpu = time.time(), cpu_seconds(stack.broker.pid or 0)
    procs = {"agent": spawn(["bench.faust_floor", "--bootstrap", kafka.bootstrap_servers,
                             "--events", str(n_events), "--forward-from", "toolrec.samples.one",
                             "--forward-to", topic, "--forward-until", json.dumps(backlog_ends),
                             "--burn-us", str(burn_us)], env, log),
             "sink": spawn(["toolrec", "lake", "sink"], sink_env, base / f"{name}-sink.log")}
    try:
        done = wait_for(lambda: delta_rows(lake), samples, "forwarded samples in Delta",
                        started, args.timeout, {"sink": procs["sink"]})
        firsts = [json.loads(line)["first"] for line in log.read_text().splitlines()
                  if line.startswith('{"first"')]
        cpu = {p: cpu_seconds(proc.pid) for p, proc in procs.items()
               if proc.poll() is None}
        cpu["broker"] = cpu_seconds(stack.broker.pid or 0) - broker_cpu
    finally:
        for proc in procs.values():
            stop_pid(proc.pid, timeout_s=20)
    if not firsts:
        raise SystemExit(f"the forwarding agent never reported its first batch; see {log}")
    return n_events / (done - firsts[0]), cpu


def p99(values: list[float]) -> float:
    """Within the values' range (the default, exclusive method extrapolates past the
    maximum of a few dozen values)."""
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 \
        else values[0]


def stage_report(splits: list[tuple[float, ...]]) -> str:
    """p50 / p99 of each stage over all clicks, then each stage's mean over the slowest 1 %
    of clicks (what their latency is made of)."""
    columns = list(zip(*splits, strict=True))
    per_stage = "  ".join(f"{name} p50={statistics.median(c):.2f} p99={p99(list(c)):.2f}"
                          for name, c in zip(STAGES, columns, strict=True))
    slowest = sorted(splits, key=sum)[-max(len(splits) // 100, 1):]
    tail = "  ".join(f"{name} {statistics.mean(c):.2f}"
                     for name, c in zip(STAGES, zip(*slowest, strict=True), strict=True))
    return f"{per_stage}   slowest 1 % ({len(slowest)} clicks), mean s: {tail}"


def timeline_report(live: Live, segment_s: float = 5.0) -> str:
    """p99 of click → Delta and of its two variable stages (close, sink_batch) per
    `segment_s` of the live phase, by when the click was sent: whether the slow clicks are
    spread over the phase (a steady cost) or bunched (a start-up or a pause)."""
    by_segment: dict[int, list[tuple[float, ...]]] = {}
    for sent, split in zip(live.sent, live.splits, strict=True):
        by_segment.setdefault(int(sent // segment_s), []).append(split)
    close, batch = STAGES.index("close"), STAGES.index("sink_batch")
    return "  ".join(
        f"{k * segment_s:g}-{(k + 1) * segment_s:g}s p99={p99([sum(s) for s in splits]):.2f}"
        f" (close {p99([s[close] for s in splits]):.2f}, sink_batch "
        f"{p99([s[batch] for s in splits]):.2f}, n={len(splits)})"
        for k, splits in sorted(by_segment.items()))


# A close stage growing slower than this (s per s of stream) adds at most 1.2 s over the
# default 60 s phase: the worker keeps up. Faster, the phase's p99 depends on its length.
STEADY_TREND = 0.02


def close_trend(live: Live) -> str:
    """The least-squares slope of each click's close stage against when it was sent: how
    much further the worker falls behind per second of stream. A 20 s phase can pass a p99
    bound while a worker short of CPU trails more every second (2026-12-04: p99 4.96 s over
    20 s at 3,000 events/s, 21.1 s over 60 s); this line says which it was."""
    if len(live.sent) < 2 or len(set(live.sent)) < 2:
        return "n/a (fewer than two send times)"
    close = STAGES.index("close")
    slope = statistics.linear_regression(live.sent, [s[close] for s in live.splits]).slope
    if abs(slope) < STEADY_TREND:
        verdict = f"steady: |slope| < {STEADY_TREND:g}"
    elif slope > 0:
        verdict = ("not sustained: the worker trails the stream further every second, so the "
                   "p99 grows with the phase's length")
    else:
        verdict = "catching up: a backlog from before the phase drains"
    return f"close_s_per_s={slope:.3f} ({verdict})"


def budget_burns(budget: list[str], n_events: int, users: int, partitions: int
                 ) -> dict[str, float]:
    """`--budget`'s entries as label → CPU µs per event to burn: numbers as they are,
    `worker` and `ideal` measured now by `bench.worker_cpu` on events like this run's, in
    a fresh process (the bench's own heap would slow it), labelled with their value."""
    unknown = [e for e in budget if e not in ("worker", "ideal") and not _is_number(e)]
    if unknown:
        raise SystemExit(f"--budget: {unknown}: give µs numbers, `worker` or `ideal`")
    measured: dict[str, float] = {}
    if {"worker", "ideal"} & set(budget):
        out = subprocess.run([sys.executable, "-m", "bench.worker_cpu", "--json", "--events",
                              str(n_events), "--users", str(users), "--partitions",
                              str(partitions)], check=True, capture_output=True, text=True)
        measured = json.loads(out.stdout.strip().splitlines()[-1])
    return {(f"{e} {measured[e]:.0f}" if e in measured else e):
            (measured[e] if e in measured else float(e)) for e in budget}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def backlog_copy(kafka: KafkaConfig) -> KafkaConfig:
    """`kafka` with the event topics renamed to `BACKLOG_TOPICS`, which it creates."""
    copy = kafka.model_copy(update={"topics": kafka.topics.model_copy(update=BACKLOG_TOPICS)})
    ensure_topics(copy, list(BACKLOG_TOPICS.values()))
    return copy


def per_1k(cpu: dict[str, float], n_events: int) -> str:
    return "  ".join(f"{p} {1000 * c / n_events:.2f}" for p, c in sorted(cpu.items()))


def latency_summary(splits: Sequence[tuple[float, ...]], missing: int | None = None) -> str:
    """p50, p99 and max of click → Delta over `splits` (each click's stages)."""
    if not splits:
        return "n=0"
    latencies = sorted(sum(split) for split in splits)
    return (f"p50={statistics.median(latencies):.2f} p99={p99(latencies):.2f} "
            f"max={latencies[-1]:.2f} n={len(latencies)}"
            + ("" if missing is None else f" missing={missing}"))


def engine_of(args: argparse.Namespace) -> str:
    """The workers' engine in this run: `--engine`, else the environment's, else the default."""
    return str(args.engine or os.environ.get("TOOLREC_STREAMS__ENGINE")
               or StreamsConfig().engine)


def machine_bound_line(cpu: dict[str, float], n_events: int, floor: float) -> str:
    """The most this machine runs at the phase's CPU cost per event: its cores over the CPU
    the pipeline's own processes (worker(s), sink, broker; not this bench) spent per event,
    as if they overlapped perfectly. Whatever the worker's design, the pipeline stays below
    it unless the total CPU per event falls — give or take the processes' start, which the
    phase's CPU includes (≈ 2-4 CPU-s each, up to ≈ 15 % of a 50,000-event phase; counting
    from the first sample instead would drop the sink's events table, which it writes from
    the backlog before the worker's first sample)."""
    cores = os.cpu_count() or 1
    spent = sum(seconds for process, seconds in cpu.items() if process != "bench") / n_events
    bound = cores / spent
    return (f"machine_bound_events_per_s {bound:.0f}   ({cores} cores / {1000 * spent:.2f} "
            f"CPU-ms per event of worker, sink and broker, their start included; "
            f"{bound / floor:.2f} of the floor)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--workers", type=int, choices=(1, 2), default=1)
    parser.add_argument("--rate", type=float, default=3000, help="live events/s for latency")
    parser.add_argument("--live-seconds", type=float, default=60,
                        help="long enough that a worker short of CPU shows (`close_trend`)")
    parser.add_argument("--tail-seconds", type=float, default=WINDOW_S + LATENESS_S + 1.0,
                        help="the live stream flows on this long after the measured clicks, "
                        "so their windows close on event time as in a steady stream")
    parser.add_argument("--skip-sink", action="store_true", help="no separate sink run")
    parser.add_argument("--floor-runs", type=int, default=3, help="Faust floor runs (median)")
    parser.add_argument("--budget", type=lambda v: v.split(","), default=[],
                        metavar="US[,US…]", help="also run the bound agent spending this many "
                        "CPU µs per event: the pipeline's rate as a function of the worker's "
                        "own CPU; `worker` and `ideal` are the worker's and the idealized "
                        "loop's in-process CPU per event, measured in this run "
                        "(`bench.worker_cpu`)")
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="the workers' [streams] engine (default: as configured)")
    parser.add_argument("--compare-engine", action="store_true", help="also run the pipeline "
                        "phase with the other engine, side by side")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="toolrec-bench-pipeline-"))
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start")
    with LocalStack(base / "broker") as stack:
        kafka = stack.kafka_config()
        t0 = int(time.time() * 1000) - 3 * 3600 * 1000
        events = make_events(args.events, args.users, t0, span_ms=2 * 3600 * 1000)
        n_impressions = sum(kind == "impression" for kind, _, _ in events)
        samples = 3 * n_impressions
        ensure_worker_topics(StreamsConfig(), kafka)
        print(f"events {len(events)} ({n_impressions} impressions → {samples} samples)")
        print(f"producer_events_per_s {asyncio.run(produce(kafka, events)):.0f}")
        asyncio.run(produce(backlog_copy(kafka), events))  # the bound's sink reads these
        topics = [kafka.topics.impressions, kafka.topics.feedback]
        ceiling = asyncio.run(ceiling_rate(kafka, topics, len(events)))
        floors = faust_floors(kafka, len(events), args.floor_runs)
        floor = statistics.median(floors)
        # The other engine first and without live traffic: a phase reads the source topics
        # from the start, so it would also meet the live events of any phase before it.
        other_engine = next(e for e in ENGINES if e != engine_of(args))
        other = run_phase(stack, base, "other", len(events), samples, 1, args, sink=True,
                          engine=other_engine, live_too=False) if args.compare_engine else None
        one = run_phase(stack, base, "one", len(events), samples, 1, args, sink=True)
        bound, bound_cpu = forward_bound(stack, base, len(events), samples,
                                          one.backlog_ends, args)
        burns = budget_burns(args.budget, args.events, args.users, kafka.partitions)
        budget = {label: forward_bound(stack, base, len(events), samples, one.backlog_ends,
                                       args, us)[0] for label, us in burns.items()}
        solo = two = None
        if args.workers == 2:  # the worker stage alone, one worker then two
            solo = run_phase(stack, base, "solo", len(events), samples, 1, args, sink=False)
            two = run_phase(stack, base, "two", len(events), samples, 2, args, sink=False)
        sink_lines: list[str] = []
        if not args.skip_sink:
            from bench.sink import measure_sink

            sink_kafka = kafka.model_copy(update={"topics": kafka.topics.model_copy(
                update={"samples": "toolrec.samples.one"})})
            sink_lines = measure_sink(LakeConfig(root=str(base / "lake-sink")), sink_kafka,
                                      rows=samples, ceiling=False,
                                      user_id_key=BENCH_KEY.encode()).lines()
        reasons = dead_letter_reasons(kafka)
        commits = [c for c in history(LakeConfig(root=str(base / "lake-one")), "samples")
                   if c.get("operation") == "WRITE"]
    print(f"pipeline_events_per_s {one.pipeline_rate:.0f}   (backlog through worker and sink "
          f"into Delta; worker stage alone {one.worker_rate:.0f}/s; 1 worker, 1 sink; engine "
          f"{engine_of(args)})")
    if other is not None:
        print(f"pipeline_events_per_s_{other_engine} {other.pipeline_rate:.0f}   (the same "
              f"phase with engine {other_engine}, same run; worker stage alone "
              f"{other.worker_rate:.0f}/s; {engine_of(args)} / {other_engine} = "
              f"{one.pipeline_rate / other.pipeline_rate:.2f}; cpu_s_per_1k_events "
              f"{per_1k(other.cpu, len(events))}; run before the main phase, no live traffic)")
    print(f"faust_floor_events_per_s {floor:.0f}   (an agent that only iterates the same "
          f"topics, same batching; median of {len(floors)} runs: "
          f"{', '.join(f'{f:.0f}' for f in floors)}; pipeline / floor = "
          f"{one.pipeline_rate / floor:.2f}, worker stage / floor = "
          f"{one.worker_rate / floor:.2f})")
    print(f"ceiling_events_per_s {ceiling:.0f}   (bare aiokafka consumer, same topics)")
    print(f"pipeline_bound_events_per_s {bound:.0f}   (the floor agent forwarding the worker's "
          f"own samples, computing nothing, with the same sink into Delta: the most any worker "
          f"keeping the samples contract reaches here; bound / floor = {bound / floor:.2f}, "
          f"pipeline / bound = {one.pipeline_rate / bound:.2f}; cpu_s_per_1k_events "
          f"{per_1k(bound_cpu, len(events))})")
    if budget:
        print("pipeline_rate_by_worker_cpu " + "  ".join(
            f"{label}µs {rate:.0f}/s ({rate / floor:.2f} of the floor)"
            for label, rate in budget.items())
            + "   (the bound agent spending that much CPU per event; `worker` / `ideal`: the "
            "worker's / `bench.worker_cpu.ideal_loop`'s in-process CPU per event, this run)")
    for line in sink_lines[:1]:
        print(f"{line}   (bench.sink.measure_sink on the run's samples topic)")
    live = one.live
    if live.splits:
        print(f"click_to_delta_s {latency_summary(live.splits, live.missing)}   (every click "
              f"of {args.live_seconds:g} s at {args.rate:g} events/s, the stream flowing on "
              f"{args.tail_seconds:g} s more; includes window {WINDOW_S} s "
              f"+ lateness {LATENESS_S} s)")
        print(f"click_to_delta_stages_s {stage_report(live.splits)}")
        print(f"click_to_delta_timeline_s {timeline_report(live)}   (by when the click was "
              "sent)")
        print(f"click_to_delta_trend {close_trend(live)}")
        print(f"click_to_delta_stream_end_s {latency_summary(live.tail_splits)}   (the "
              f"{args.tail_seconds:g} s tail's clicks: the stream stops after them, so the "
              "last windows close on the worker's wall-clock tick, tick_interval_s)")
    if live.lags:
        print(f"worker_watermark_lag_s p50={statistics.median(live.lags):.2f} "
              f"p99={p99(live.lags):.2f} max={live.lags[-1]:.2f} n={len(live.lags)}   (live "
              "phase: clock − watermark at each partition-state write; the part of the close "
              "stage that is the worker trailing the stream)")
    print("peak_rss_mb " + "  ".join(f"{p} {r:.0f}" for p, r in sorted(one.rss.items())))
    print(f"cpu_s_per_1k_events {per_1k(one.cpu, len(events))}   (backlog phase)")
    print(machine_bound_line(one.cpu, len(events), floor))
    if live.cpu is not None:
        print(f"cpu_s_per_1k_events_live {per_1k(live.cpu, live.events)}   (live "
              f"phase; × {args.rate / 1000:g} = cores used at {args.rate:g} events/s)")
    print(f"worker_profile {one.profile}")
    print(f"sink_profile cpu s per 10k rows {one.sink_profile}   (its last progress line: "
          "backlog and live phase)")
    if one.recovery:
        print(f"state_recovery {one.recovery}")
    if solo is not None and two is not None:
        print(f"worker_stage_events_per_s one {solo.worker_rate:.0f}  two {two.worker_rate:.0f}"
              f"   (no sink running; cpu_s_per_1k_events one: {per_1k(solo.cpu, len(events))};"
              f" two: {per_1k(two.cpu, len(events))})")
        print(f"broker_cpu_share {two.cpu['broker'] / sum(two.cpu.values()):.2f}   (two workers; "
              f"one worker: {solo.cpu['broker'] / sum(solo.cpu.values()):.2f})")
        print(f"scale_out_ratio {two.worker_rate / solo.worker_rate:.2f}")
    if commits:
        files = [int(c.get("operationMetrics", {}).get("num_added_files", 0)) for c in commits]
        print(f"files_per_delta_commit {statistics.mean(files):.2f} over {len(files)} commits")
    print(f"dead_letters {sum(reasons.values())} {dict(reasons.most_common())}   (all phases)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end; logs in {base}")


if __name__ == "__main__":
    main()
