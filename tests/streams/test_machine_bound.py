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
