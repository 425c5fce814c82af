"""`bench.pipeline.machine_bound_line`: cores over the pipeline processes' CPU per event."""

from __future__ import annotations

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


def test_the_latency_summary_counts_missing_clicks_only_when_asked() -> None:
    from bench.pipeline import latency_summary

    splits = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
    assert latency_summary(splits, 1) == "p50=4.00 p99=5.96 max=6.00 n=3 missing=1"
    assert latency_summary(splits) == "p50=4.00 p99=5.96 max=6.00 n=3"
    assert latency_summary([]) == "n=0"
