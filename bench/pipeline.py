"""Pipeline benchmark: producer → Faust worker → sink → Delta, against its ceiling.

    python -m bench.pipeline [--events 200000] [--users 10000]

1. Preloads N events (impressions with 3 suggestions, ~0.3 feedback each; event times
   spread over two hours so windows close as the stream advances) into a fresh local broker.
2. Ceiling: a bare aiokafka consumer reads the same two topics from the beginning.
3. Pipeline: one `toolrec streams worker` and one `toolrec lake sink` work through the
   backlog until every sample is in the Delta table.
4. Latency: live traffic at a modest rate; click-to-Delta latency per clicked sample
   (it includes the attribution window + lateness, printed beside it).
Prints `pipeline_events_per_s`, `ceiling_events_per_s`, their ratio, latency p50/p99, peak
RSS of worker and sink, and files per Delta commit.
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
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from deltalake import DeltaTable

from bench.sink import ceiling_rate
from infra.broker import LocalStack
from infra.processes import stop_pid
from lakehouse.config import LakeConfig
from lakehouse.maintenance import history
from lakehouse.tables import read_table, table_uri
from streams.app import ensure_worker_topics
from streams.config import StreamsConfig
from toolrec.kafka import KafkaConfig

WINDOW_S, LATENESS_S = 2.0, 0.5
PROMPT = "<|im_start|>system\nSuggest follow-up queries.<|im_end|>\n" + "context " * 30
TEXTS = ["turn on battery saver", "what drains my battery", "set an alarm for 7"]
TOOLS = ["battery.saver.on", None, "clock.alarm.set"]


def make_events(
    n_events: int, users: int, t0: int, span_ms: int, seed: int = 0
) -> list[tuple[str, bytes, bytes]]:
    """(kind, key, value) in production order; ~1.3 events per impression."""
    rng = random.Random(seed)
    n_impressions = int(n_events / 1.3)
    events: list[tuple[str, bytes, bytes]] = []
    for i in range(n_impressions):
        if len(events) >= n_events:
            break
        user, ts, rid = f"p_{rng.randrange(users):032x}", t0 + i * span_ms // n_impressions, f"b{i}"
        events.append(("impression", user.encode(), json.dumps(impression(rid, user, ts)).encode()))
        if rng.random() < 0.3 and len(events) < n_events:
            position = rng.choice((1, 2, 3))
            events.append(
                (
                    "feedback",
                    user.encode(),
                    json.dumps(feedback(rid, user, ts + 500, position)).encode(),
                )
            )
    return events


def impression(rid: str, user: str, ts: int) -> dict[str, Any]:
    return {
        "schema": "impression/1", "event_id": f"e-{rid}", "request_id": rid, "user_id": user,
        "session_id": "s", "ts": ts, "model_version": "m0", "template_version": "gqr-chatml-v1",
        "prompt": PROMPT, "query": "my battery is low", "context": {"battery": 12},
        "suggestions": [
            {"position": k + 1, "text": TEXTS[k], "tool_id": TOOLS[k]} for k in range(3)
        ],
        "decoding": {"temperature": 0.7, "explore": False},
    }  # fmt: skip


def feedback(rid: str, user: str, ts: int, position: int) -> dict[str, Any]:
    return {
        "schema": "feedback/1",
        "event_id": f"f-{rid}",
        "request_id": rid,
        "user_id": user,
        "ts": ts,
        "type": "click",
        "position": position,
        "success": None,
    }


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


def delta_rows(lake: LakeConfig) -> int:
    try:
        actions = DeltaTable(table_uri(lake, "samples")).get_add_actions(flatten=True)
    except Exception:  # not created yet
        return 0
    return int(sum(actions.column("num_records").to_pylist()))


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "toolrec", *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (robust to a loaded machine, unlike
    wall time): fields 14 and 15 of /proc/<pid>/stat, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_event_time(log: Path) -> float | None:
    """Wall time of the first progress line that reports handled events."""
    for line in log.read_text(errors="replace").splitlines():
        match = re.match(r"\[(\S+ \S+)\].*streams: partitions=\[[^\]]*\] events=(\d+)", line)
        if match and int(match.group(2)) > 0:
            return time.mktime(time.strptime(match.group(1)[:19], "%Y-%m-%d %H:%M:%S")) - 1.0
    return None


def wait_rows(lake: LakeConfig, expected: int, started: float, timeout_s: float) -> float:
    last_report, rows = 0.0, 0
    while rows < expected:
        if time.time() - started > timeout_s:
            raise SystemExit(f"timeout: {rows} of {expected} samples in Delta after {timeout_s} s")
        time.sleep(0.5)
        rows = delta_rows(lake)
        if time.time() - last_report > 10:
            elapsed = time.time() - started
            rate = rows / elapsed
            eta = f"{(expected - rows) / rate:.0f} s" if rate > 0 else "unknown"
            print(f"  … {rows}/{expected} samples in Delta ({rate:.0f}/s, eta {eta})")
            last_report = time.time()
    return time.time()


def live_latency(kafka: KafkaConfig, lake: LakeConfig, n: int) -> list[float]:
    """Seconds from producing a click to its sample being readable in Delta."""
    now = int(time.time() * 1000)
    events, clicked_at = [], {}
    for i in range(n):
        rid, user = f"live{i}", f"p_live{i % 50:028x}"
        events.append(
            ("impression", user.encode(), json.dumps(impression(rid, user, now)).encode())
        )
        events.append(
            ("feedback", user.encode(), json.dumps(feedback(rid, user, now + 1, 1)).encode())
        )
    asyncio.run(produce(kafka, events))
    produced = time.time()
    clicked_at = {f"live{i}:1": produced for i in range(n)}
    seen: dict[str, float] = {}
    deadline = produced + 120
    while len(seen) < n and time.time() < deadline:
        rows = read_table(
            lake,
            "samples",
            columns=["sample_id"],
            filters=[("request_id", "in", [s.split(":")[0] for s in clicked_at])],
        )
        for sample_id in rows.column("sample_id").to_pylist():
            if sample_id in clicked_at:
                seen.setdefault(sample_id, time.time())
        time.sleep(0.1)
    return sorted(seen[s] - clicked_at[s] for s in seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--live", type=int, default=200, help="live impressions for latency")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="toolrec-bench-pipeline-"))
    with LocalStack(base / "broker") as stack:
        kafka = stack.kafka_config()
        streams = StreamsConfig(attribution_window_s=WINDOW_S, allowed_lateness_s=LATENESS_S)
        ensure_worker_topics(streams, kafka)
        lake = LakeConfig(root=str(base / "lake"))
        t0 = int(time.time() * 1000) - 3 * 3600 * 1000
        events = make_events(args.events, args.users, t0, span_ms=2 * 3600 * 1000)
        n_impressions = sum(kind == "impression" for kind, _, _ in events)
        print(f"events {len(events)} ({n_impressions} impressions → {3 * n_impressions} samples)")
        print(f"producer_events_per_s {asyncio.run(produce(kafka, events)):.0f}")
        ceiling = asyncio.run(
            ceiling_rate(kafka, [kafka.topics.impressions, kafka.topics.feedback], len(events))
        )
        env = {
            **os.environ,
            "TOOLREC_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "TOOLREC_INFRA__STATE_DIR": str(base / "state"),
            "TOOLREC_LAKE__ROOT": lake.root,
            "TOOLREC_STREAMS__ATTRIBUTION_WINDOW_S": str(WINDOW_S),
            "TOOLREC_STREAMS__ALLOWED_LATENESS_S": str(LATENESS_S),
            "TOOLREC_STREAMS__STATS_INTERVAL_S": "1",
            "TOOLREC_STREAMS__DATA_DIR": str(base / "faust"),
        }
        started = time.time()
        worker = spawn(["streams", "worker", "--loglevel", "info"], env, base / "worker.log")
        sink = spawn(["lake", "sink"], env, base / "sink.log")
        try:
            done = wait_rows(lake, 3 * n_impressions, started, args.timeout)
            cpu = (cpu_seconds(worker.pid), cpu_seconds(sink.pid))  # start-up included
            first = first_event_time(base / "worker.log") or started
            rate = len(events) / (done - first)
            latencies = live_latency(kafka, lake, args.live)
            rss = (peak_rss_mb(worker.pid), peak_rss_mb(sink.pid))
        finally:
            stop_pid(worker.pid, timeout_s=20)
            stop_pid(sink.pid, timeout_s=20)
        writes = [c for c in history(lake, "samples") if c.get("operation") == "WRITE"]
        files = [int(c.get("operationMetrics", {}).get("num_added_files", 0)) for c in writes]
    print(
        f"pipeline_events_per_s {rate:.0f}   (wall {done - started:.1f} s incl. "
        f"{first - started:.1f} s worker start-up; 1 worker, 1 sink)"
    )
    print(f"ceiling_events_per_s {ceiling:.0f}   (bare aiokafka consumer, same topics)")
    print(f"ratio {rate / ceiling:.3f}")
    if latencies:
        q = statistics.quantiles(latencies, n=100)
        print(
            f"click_to_delta_p50_s {statistics.median(latencies):.2f}  p99_s {q[98]:.2f}  "
            f"(n={len(latencies)}; includes window {WINDOW_S} s + lateness {LATENESS_S} s)"
        )
    print(f"peak_rss_mb worker {rss[0]:.0f}  sink {rss[1]:.0f}")
    print(f"cpu_s worker {cpu[0]:.1f}  sink {cpu[1]:.1f}   (backlog phase, incl. start-up; "
          f"{len(events) / max(cpu[0], 1e-9):.0f} events per worker CPU-second)")
    if files:
        print(f"files_per_delta_commit {statistics.mean(files):.2f} over {len(files)} commits")
    print(f"logs in {base}")


if __name__ == "__main__":
    main()
