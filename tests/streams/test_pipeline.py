"""Telemetry → Faust worker → sink → Delta, end to end, with crashes of worker and sink."""

from __future__ import annotations

import time

import pyarrow.compute as pc
import pytest

from lakehouse.config import LakeConfig
from lakehouse.tables import read_table
from streams.config import StreamsConfig
from tests.streams.events import feedback, impression
from tests.streams.test_worker import produce
from tests.streams.traffic import Traffic
from toolrec.kafka import KafkaConfig

WINDOW = {"attribution_window_s": 4, "allowed_lateness_s": 1}


def delta_rows(lake: LakeConfig, until_count: int, timeout_s: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    rows: list[dict] = []
    while time.monotonic() < deadline:
        try:
            rows = read_table(lake, "samples").to_pylist()
        except Exception:  # the sink has not created the table yet
            rows = []
        if len(rows) >= until_count:
            time.sleep(1.5)  # a duplicate would land in a later micro-batch: give it time
            return read_table(lake, "samples").to_pylist()
        time.sleep(0.3)
    raise AssertionError(f"{len(rows)} of {until_count} samples in Delta after {timeout_s} s")


def test_hand_computed_samples_land_in_delta(
    kafka: KafkaConfig,
    start_worker,
    start_sink,  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    start_worker(**WINDOW)
    start_sink()
    now = int(time.time() * 1000)
    imp, fb = kafka.topics.impressions, kafka.topics.feedback
    produce(
        kafka,
        [
            (imp, b"p_alice", impression("r1", ts=now).to_json_bytes()),
            (imp, b"p_alice", impression("r2", ts=now).to_json_bytes()),
            (fb, b"p_alice", feedback("r1", 1, ts=now + 5).to_json_bytes()),
            (
                fb,
                b"p_alice",
                feedback("r1", 1, ts=now + 9, type="execute", success=True).to_json_bytes(),
            ),
            (fb, b"p_alice", feedback("r2", 3, ts=now + 9).to_json_bytes()),
        ],
    )
    rows = {r["sample_id"]: r for r in delta_rows(LakeConfig(root=str(tmp_path / "lake")), 6)}
    assert sorted(rows) == ["r1:1", "r1:2", "r1:3", "r2:1", "r2:2", "r2:3"]
    # r1: fresh user, p̄ = prior 0.1 → ρ = 1, w_activity = 1.
    assert [rows[f"r1:{k}"]["clicked"] for k in (1, 2, 3)] == [True, False, False]
    assert [rows[f"r1:{k}"]["weight"] for k in (1, 2, 3)] == pytest.approx([3.0, 1.0, 1.0])
    assert rows["r1:1"]["w_tool"] == 3.0 and rows["r1:1"]["executed"] is True
    # r2 sees r1's outcome: I = 3, C = 1, p̄ = (1 + 100·0.1)/(3 + 100), p_u = (1 + 20 p̄)/23.
    p_bar = 11 / 103
    p_u = (1 + 20 * p_bar) / 23
    rho = p_u / p_bar
    r2 = [rows[f"r2:{k}"] for k in (1, 2, 3)]
    assert [r["clicked"] for r in r2] == [False, False, True]
    assert r2[0]["weight"] == pytest.approx(rho**0.5, rel=1e-4)  # a skip by a >average clicker
    assert r2[2]["w_activity"] == pytest.approx(rho**-0.5, rel=1e-4)
    assert r2[2]["w_tool"] == 2.0  # clock.alarm.set clicked, not executed
    assert r2[2]["weight"] == pytest.approx(2 * rho**-0.5, rel=1e-4)
    assert r2[1]["prompt"].endswith("- turn on wifi\n") and r2[1]["position"] == 2
    assert {r["date"] for r in rows.values()} == {
        time.strftime("%Y-%m-%d", time.gmtime(now / 1000))
    }


def test_worker_and_sink_killed_mid_stream(
    kafka: KafkaConfig,
    start_worker,
    start_sink,  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    worker, sink = start_worker(**WINDOW), start_sink()
    traffic = Traffic(kafka, seed=3)
    for _ in range(3):
        traffic.wave(30)
        time.sleep(1.0)
    lake = LakeConfig(root=str(tmp_path / "lake"))
    delta_rows(lake, 1)  # rows are landing
    traffic.wave(30)
    worker.kill()
    traffic.wave(30)
    start_worker(**WINDOW)
    time.sleep(2)
    sink.kill()
    traffic.wave(30)
    start_sink()
    traffic.wave(20)
    traffic.close()
    expected = traffic.expected(StreamsConfig(**WINDOW))
    rows = delta_rows(lake, len(expected))
    ids = [r["sample_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(expected), "no loss, no duplicates"
    for row in rows:
        want = expected[row["sample_id"]]
        got = {k: row[k] for k in want if k != "schema"}
        assert got == pytest.approx({k: v for k, v in want.items() if k != "schema"}), row[
            "sample_id"
        ]
    assert pc.sum(read_table(lake, "samples")["clicked"]).as_py() == sum(
        s["clicked"] for s in expected.values()
    )
