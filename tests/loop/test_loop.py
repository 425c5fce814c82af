"""The miniature closed loop on the tiny model: real broker, Faust worker, Delta sink, API
server and retraining daemon as subprocesses; two rounds of simulated users with a refresh
and a hot-swap in between."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loop.config import ClickModelConfig, DemoConfig, SimulatorConfig
from loop.demo import Demo, DemoResult, round_table
from loop.models import StartModel

# A tiny SFT (≈15 s) plus two rounds with one refresh (≈40 s): ≈75 s on an idle 2-core
# machine, so it runs in the default `make test`. The timeout leaves room for a busy one.
pytestmark = [pytest.mark.timeout(900), pytest.mark.usefixtures("single_torch_thread")]


@pytest.fixture(scope="module")
def demo_result(tmp_path_factory: pytest.TempPathFactory, tiny_start: StartModel,
                open_gate: dict[str, Any]) -> DemoResult:
    from toolrec.config import load_settings

    state = tmp_path_factory.mktemp("loop-demo") / "run"
    cfg = DemoConfig(state_dir=state, rounds=2, users=6, requests_per_user=2, concurrency=2,
                     max_steps=4, eval_prompts=1, attribution_window_s=2.0,
                     allowed_lateness_s=0.5, daemon_interval_s=2.0, refresh_timeout_s=400)
    # heavy clickers only, so that a dozen requests surely bring clicks (and non-clicks)
    clicky = SimulatorConfig(click=ClickModelConfig(rare_share=0.0, heavy_share=1.0))
    lines: list[str] = []
    result = Demo(load_settings(), cfg, tiny_start, echo=lines.append,
                  simulator_config=clicky, extra_overrides=open_gate).run()
    result.config["echo"] = lines
    return result


def test_samples_reach_delta(demo_result: DemoResult) -> None:
    for round_ in demo_result.rounds:
        shown = sum(len(r.shown) for r in round_.records)
        assert shown > 0
        assert round_.samples == shown, round_table(demo_result)
    samples = demo_result.samples.to_pylist()
    request_ids = {r.request_id for r in demo_result.records}
    assert {s["request_id"] for s in samples} == request_ids
    clicked = {(r.request_id, r.reaction.position) for r in demo_result.records
               if r.reaction.clicked}
    assert {(s["request_id"], s["position"]) for s in samples if s["clicked"]} == clicked
    assert all(s["weight"] > 0 for s in samples)


def test_refresh_makes_a_candidate_and_promotion_swaps_the_served_version(
    demo_result: DemoResult,
) -> None:
    versions = [row["version"] for row in demo_result.registry]
    assert versions[:2] == ["v1", "v2"], demo_result.registry
    refresh = demo_result.rounds[0].refresh
    assert refresh is not None and refresh["version"] == "v2"
    assert refresh["status"] == "champion", refresh  # the gate is wide open here
    assert refresh["n_train"] > 0
    assert demo_result.rounds[0].versions == ["v1"]
    assert demo_result.rounds[1].versions == ["v2"], round_table(demo_result)


def test_the_system_never_sees_the_ground_truth(demo_result: DemoResult) -> None:
    """What reached the system (the raw events in Delta) holds only contract fields."""
    from contracts.events import Feedback, Impression
    from lakehouse.config import LakeConfig
    from lakehouse.tables import read_table
    from retrieval.context import DeviceContext

    lake = LakeConfig(root=str(Path(demo_result.config["demo"]["state_dir"]) / "lake"))
    events = read_table(lake, "events", columns=["kind", "payload", "user_id"]).to_pylist()
    assert {e["kind"] for e in events} == {"impression", "feedback"}
    allowed = {"impression": set(Impression.model_fields) | {"schema"},
               "feedback": set(Feedback.model_fields) | {"schema"}}
    raw_ids = {r.turn.request.raw_user_id for r in demo_result.records}
    hidden = {r.turn.intent.key for r in demo_result.records if r.turn.intent.kind == "need"}
    hidden |= {r.turn.user.cohort for r in demo_result.records}
    for event in events:
        payload: dict[str, Any] = json.loads(event["payload"])
        assert set(payload) <= allowed[event["kind"]], payload
        assert event["user_id"] not in raw_ids  # pseudonymized
        if event["kind"] == "impression":
            assert set(payload["context"]) <= set(DeviceContext.model_fields)
            visible = json.dumps({k: payload[k] for k in ("query", "context", "prompt")})
            for value in hidden:
                assert f'"{value}"' not in visible


def test_round_table_and_report(demo_result: DemoResult, tmp_path: Path) -> None:
    from loop.report import demo_report

    text = round_table(demo_result)
    assert "v1" in text and "v2" in text
    html = demo_report(demo_result, text)
    assert html.count("<img src='data:image/png;base64,") >= 4
    assert "Ground-truth CTR by model version" in html
    assert "Learning curve" in html and "GT CTR [95% interval]" in text
    for round_ in demo_result.rounds:  # each round's GT CTR with its interval over requests
        row = round_.row()
        assert row["gt_ctr_lo"] <= row["gt_ctr"] <= row["gt_ctr_hi"]
