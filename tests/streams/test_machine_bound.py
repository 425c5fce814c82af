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
