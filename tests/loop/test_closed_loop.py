"""`toolrec experiment closed-loop` end to end on the tiny model: per arm (raw, full) the
real stack — broker, Faust worker, Delta sink, retraining daemon, API as subprocesses —
two rounds from the same SFT champion and the same simulated turns, a refresh and a
hot-swap in between; then the per-round table, paired differences, JSON and report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loop.closedloop import ClosedLoop, summary, write_outputs
from loop.config import ClickModelConfig, ClosedLoopConfig, DemoConfig, SimulatorConfig
from loop.demo import DemoResult
from loop.models import StartModel

# Two stacks of ≈60–80 s each on an idle 2-core machine; the timeout leaves room for a busy one.
pytestmark = [pytest.mark.timeout(1200), pytest.mark.usefixtures("single_torch_thread")]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_start: StartModel,
        open_gate: dict[str, Any]) -> tuple[ClosedLoop, dict[str, Any], dict[str, Path]]:
    from toolrec.config import load_settings

    out = tmp_path_factory.mktemp("closed-loop") / "out"
    cfg = ClosedLoopConfig(out_dir=out, model="tiny", arms=("raw", "full"), rounds=2, users=6,
                           requests_per_user=2, max_steps=2, seed=3)
    demo = DemoConfig(concurrency=2, eval_prompts=1, attribution_window_s=2.0,
                      allowed_lateness_s=0.5, daemon_interval_s=2.0, refresh_timeout_s=400)
    clicky = SimulatorConfig(click=ClickModelConfig(rare_share=0.0, heavy_share=1.0))
    lines: list[str] = []
    loop = ClosedLoop(load_settings(), cfg, tiny_start, echo=lines.append,
                      simulator_config=clicky, demo_config=demo, extra_overrides=open_gate)
    results = loop.run()
    data = summary(results, cfg, loop.wall_s)
    return loop, data, write_outputs(data, out)


def _result(run: tuple[ClosedLoop, Any, Any], arm: str) -> DemoResult:
    return run[0].results[arm]


def test_each_arm_trains_on_what_its_predecessor_served(run: Any) -> None:
    for arm in ("raw", "full"):
        result = _result(run, arm)
        assert [r.round for r in result.rounds] == [1, 2]
        assert result.rounds[0].versions == ["v1"]  # the same SFT start
        assert result.rounds[0].refresh is not None
        assert result.rounds[0].refresh["status"] == "champion", result.rounds[0].refresh
        assert result.rounds[1].versions == ["v2"]  # trained on round 1, hot-swapped
        v2 = next(row for row in result.registry if row["version"] == "v2")
        assert v2["parent"] == "v1" and v2["n_train"] > 0


def test_arms_answer_the_same_turns_and_differ_only_in_calibration(run: Any) -> None:
    raw, full = _result(run, "raw"), _result(run, "full")
    for r_round, f_round in zip(raw.rounds, full.rounds, strict=True):
        turns = {(r.turn.user.index, r.turn.index) for r in r_round.records}
        assert turns == {(r.turn.user.index, r.turn.index) for r in f_round.records}
        assert len(turns) == 12
    raw_weights = raw.samples.column("weight").to_pylist()
    full_weights = full.samples.column("weight").to_pylist()
    assert raw_weights and all(w == 1.0 for w in raw_weights)  # calibration off
    assert any(abs(w - 1.0) > 1e-6 for w in full_weights)  # calibration on


def test_json_and_report(run: Any) -> None:
    _, data, paths = run
    written = json.loads(paths["json"].read_text())
    assert set(written["arms"]) == {"raw", "full"}
    for entry in written["arms"].values():
        rounds = entry["rounds"]
        assert [r["round"] for r in rounds] == [1, 2]
        for r in rounds:
            assert r["gt_ctr_lo"] <= r["gt_ctr"] <= r["gt_ctr_hi"]
    vs = written["vs_raw"]["full"]
    assert [r["pairs"] for r in vs["rounds"]] == [12, 12]
    pooled = vs["after_first_refresh"]
    assert pooled["pairs"] == 12 and pooled["abs"]["lo"] <= pooled["abs"]["mean"]
    html = paths["report"].read_text()
    assert "Closed loop" in html and "<img src='data:image/png;base64," in html
    assert "Paired difference to raw" in html
