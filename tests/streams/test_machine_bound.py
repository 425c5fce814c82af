"""`bench.pipeline.machine_bound_line`: cores over the pipeline processes' CPU per event."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.pipeline import machine_bound_line


def test_the_bound_is_cores_over_the_cpu_per_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    # 0.5 CPU-ms per event of worker, sink and broker; the bench's own CPU does not count
    line = machine_bound_line({"worker0": 0.3, "sink": 0.12, "broker": 0.08, "bench": 9.0},
                              1000, floor=8000)
    assert line.startswith("machine_bound_events_per_s 4000 ")
    assert "2 cores / 0.50 CPU-ms per event" in line
    assert "0.50 of the floor" in line


def test_a_workers_engine_process_is_counted_on_its_own_line() -> None:
    """`cpu_by_name`: a process's CPU, and its child's (the worker's engine) beside it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from bench.pipeline import cpu_by_name, with_children

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {burn + 'time.sleep(30)'!r}])\n"
        "time.sleep(30)\n")])
    try:
        deadline = time.monotonic() + 20
        cpu: dict[str, float] = {}
        while time.monotonic() < deadline:
            cpu = cpu_by_name({"worker0": parent})
            if cpu.get("worker0.engine", 0.0) >= 0.35:
                break
            time.sleep(0.1)
        assert len(with_children(parent.pid)) == 2
        assert cpu["worker0.engine"] >= 0.35  # the child's burn
        assert cpu["worker0"] < 0.35  # the parent only started it
    finally:
        for pid in with_children(parent.pid)[1:]:
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait(5)


def test_the_timeline_puts_each_click_in_the_segment_it_was_sent_in() -> None:
    """`timeline_report`: p99 per segment of the live phase, by when the click was sent,
    so a worker trailing the stream shows as a close stage that grows segment by segment."""
    from bench.pipeline import Live, timeline_report

    steady = (2.0, 0.3, 0.5, 0.1, 0.05)  # window, close, sink_batch, commit, watch
    trailing = (2.0, 4.0, 0.5, 0.1, 0.05)
    live = Live([steady, steady, trailing], 0, sent=[0.5, 4.9, 5.1])
    report = timeline_report(live)
    assert report.startswith("0-5s p99=2.95 (close 0.30, sink_batch 0.50, n=2)")
    assert "5-10s p99=6.65 (close 4.00, sink_batch 0.50, n=1)" in report


def test_the_trend_tells_a_worker_falling_behind_from_a_steady_one() -> None:
    """`close_trend`: the close stage's slope over send time; a worker trailing 0.3 s more
    per second is not sustained, one whose close stage only jitters is steady."""
    from bench.pipeline import Live, close_trend

    def live(close_at: list[tuple[float, float]]) -> Live:
        splits = [(2.0, close, 0.5, 0.1, 0.05) for _, close in close_at]
        return Live(splits, 0, sent=[sent for sent, _ in close_at])

    trailing = live([(t, 0.5 + 0.3 * t) for t in range(20)])
    assert close_trend(trailing).startswith("close_s_per_s=0.300 (not sustained")
    steady = live([(t, 0.5 + (0.05 if t % 2 else -0.05)) for t in range(20)])
    assert close_trend(steady).startswith("close_s_per_s=")
    assert "(steady" in close_trend(steady)
    draining = live([(t, 5.0 - 0.2 * t) for t in range(20)])
    assert close_trend(draining).startswith("close_s_per_s=-0.200 (catching up")
    assert close_trend(live([(1.0, 0.5)])).startswith("n/a")


def test_the_latency_summary_counts_missing_clicks_only_when_asked() -> None:
    from bench.pipeline import latency_summary

    splits = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
    assert latency_summary(splits, 1) == "p50=4.00 p99=5.96 max=6.00 n=3 missing=1"
    assert latency_summary(splits) == "p50=4.00 p99=5.96 max=6.00 n=3"
    assert latency_summary([]) == "n=0"


def test_the_live_clicks_split_into_measured_tail_and_missing() -> None:
    """`split_live`: a tail click is reported apart, a click never seen counts as missing,
    and a measured click's send time is relative to the first click."""
    from bench.pipeline import LiveTraffic, Seen, split_live

    traffic = LiveTraffic({"a:1": 100.0, "b:2": 101.5, "c:1": 120.0, "d:3": 121.0},
                          tail={"c:1"}, events=9)
    seen = {sid: Seen(at=105.0 + i, closed=102.0, produced=103.0, built=104.0,
                      committed=104.5) for i, sid in enumerate(("a:1", "b:2", "c:1"))}
    live = split_live(traffic, seen)
    assert (live.missing, live.events, live.sent) == (1, 9, [0.0, 1.5])
    assert live.splits[0] == (2.0, 1.0, 1.0, 0.5, 0.5)  # window, close, batch, commit, watch
    assert len(live.tail_splits) == 1 and sum(live.tail_splits[0]) == 107.0 - 120.0


def test_the_watcher_sees_each_commit_of_a_real_delta_table(tmp_path: Path) -> None:
    """`watch_delta` finds commits by their log entries, skipping those up to `after`."""
    import threading
    import time

    import pyarrow as pa
    from deltalake import write_deltalake

    from bench.pipeline import Seen, watch_delta
    from lakehouse.config import LakeConfig
    from lakehouse.tables import table_uri

    lake = LakeConfig(root=str(tmp_path))
    uri = table_uri(lake, "samples")

    def commit(ids: list[str]) -> None:
        n = len(ids)
        write_deltalake(uri, pa.table({"sample_id": ids, "closed_ts": [1000] * n,
                                       "source_timestamp": [2000] * n,
                                       "ingest_ts": [3000] * n}), mode="append")

    commit(["old:1"])  # version 0: before the watch
    seen: dict[str, Seen] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_delta, args=(lake, seen, stop, 0), daemon=True)
    watcher.start()
    try:
        commit(["a:1", "a:2"])
        commit(["b:1"])
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        watcher.join(5)
    assert sorted(seen) == ["a:1", "a:2", "b:1"]
    assert seen["b:1"].closed == 1.0 and seen["b:1"].built == 3.0
