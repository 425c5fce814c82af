"""The experiment's pure parts: logged events from simulated traffic, per-arm samples through
the streaming stage's own window + calibration functions, and the aggregation."""

from __future__ import annotations

import random

import pytest

from generator.config import DecodingConfig
from loop.experiment import (
    ARM_SWITCHES,
    ArmResult,
    aggregate,
    build_logged,
    findings,
    replay_samples,
    weight_diagnostics,
)
from loop.simulator import Shown, Simulator
from streams.config import StreamsConfig


@pytest.fixture
def logged(sim: Simulator):  # type: ignore[no-untyped-def]
    """30 users × 12 requests; lists mix the intended tool's phrasing with random tools."""
    rng = random.Random(0)
    by_id = {t.id: t for t in sim.intents.tools}
    turns = [sim.turn(u, i) for i in range(12) for u in range(30)]
    shown = []
    for turn in turns:
        items = [rng.choice(sim.intents.tools) for _ in range(4)]
        if turn.intent.kind == "tool" and rng.random() < 0.3:
            items[rng.randrange(4)] = by_id[turn.intent.key]
        shown.append(tuple(Shown(k, t.examples[0], t.id if rng.random() < 0.7 else None)
                           for k, t in enumerate(items, start=1)))
    prompts = [f"<prompt {i}>" for i in range(len(turns))]
    return build_logged(sim, turns, shown, prompts, DecodingConfig())


def _config(arm: str) -> StreamsConfig:
    base = StreamsConfig()
    return base.model_copy(update={
        "calibration": base.calibration.model_copy(update=ARM_SWITCHES[arm])})


def test_logged_events_are_valid_contract_events(logged) -> None:  # type: ignore[no-untyped-def]
    assert len(logged.impressions) == len(logged.records) == 360
    clicks = sum(r.reaction.clicked for r in logged.records)
    assert sum(f.type == "click" for f in logged.feedback) == clicks > 0
    assert all(i.user_id.startswith("p_") for i in logged.impressions)
    stamps = [i.ts for i in logged.impressions]
    assert stamps == sorted(set(stamps))


def test_replay_gives_one_sample_per_shown_suggestion(logged) -> None:  # type: ignore[no-untyped-def]
    samples = replay_samples(logged, _config("full"))
    assert len(samples) == sum(len(r.shown) for r in logged.records)
    clicked = {(r.request_id, r.reaction.position) for r in logged.records
               if r.reaction.clicked}
    assert {(s.request_id, s.position) for s in samples if s.clicked} == clicked
    assert set(logged.utility) == {s.sample_id for s in samples}


def test_arms_switch_the_calibration_terms(logged) -> None:  # type: ignore[no-untyped-def]
    raw = replay_samples(logged, _config("raw"))
    assert {s.weight for s in raw} == {1.0}
    tool = replay_samples(logged, _config("tool"))
    assert {s.w_activity for s in tool} == {1.0}
    assert all(s.w_tool > 1 for s in tool if s.clicked and s.is_tool_query)
    full = replay_samples(logged, _config("full"))
    assert len({round(s.w_activity, 6) for s in full}) > 10
    position = replay_samples(logged, _config("full_position"))
    assert any(s.w_position != 1.0 for s in position)
    # same labels in every arm: only the weights differ
    assert [s.clicked for s in raw] == [s.clicked for s in full] == [s.clicked for s in tool]


def test_activity_calibration_discounts_heavy_clickers(logged) -> None:  # type: ignore[no-untyped-def]
    raw = weight_diagnostics(replay_samples(logged, _config("raw")), logged)
    activity = weight_diagnostics(replay_samples(logged, _config("activity")), logged)
    assert activity["heavy_share_of_click_weight"] < raw["heavy_share_of_click_weight"]
    assert raw["utility_gap"] == pytest.approx(raw["unweighted_utility_gap"])


def test_aggregate_and_findings() -> None:
    results = [ArmResult(seed, arm, {"gt_ctr": base + bump, "gt_right_tool_share": 0.5,
                                     "relevance": 0.4, "tool_query_share": 0.6,
                                     "mean_words": 4.0}, {"utility_gap": 0.1})
               for seed, base in ((0, 0.20), (1, 0.25), (2, 0.22))
               for arm, bump in (("sft", 0.0), ("raw", 0.01), ("full", 0.03))]
    rows = aggregate(results, ["sft", "raw", "full"])
    full = next(r for r in rows if r["arm"] == "full")
    assert full["gt_ctr_minus_raw"][0] == pytest.approx(0.02)
    assert full["gt_ctr_minus_raw"][1] == pytest.approx(0.02)  # zero variance of the paired diff
    assert next(r for r in rows if r["arm"] == "raw")["gt_ctr_minus_raw"] is None
    assert any("full: ground-truth CTR +0.0200" in f and "better than" in f
               for f in findings(rows))


def test_user_history_deepens_the_activity_estimate(sim: Simulator, logged) -> None:  # type: ignore[no-untyped-def]
    from loop.experiment import history_events

    history = history_events(sim, logged, 40, seed=0)
    assert len(history[0]) == 40 * len(sim.users)
    cold = replay_samples(logged, _config("activity"))
    warm = replay_samples(logged, _config("activity"), history)
    assert [s.sample_id for s in warm] == [s.sample_id for s in cold]  # history not trained on
    spread = lambda rows: max(s.w_activity for s in rows) - min(s.w_activity for s in rows)  # noqa: E731
    assert spread(warm) > spread(cold)
    heavy = weight_diagnostics(warm, logged)["heavy_share_of_click_weight"]
    assert heavy < weight_diagnostics(cold, logged)["heavy_share_of_click_weight"]


def test_markdown_summary() -> None:
    from loop.report import experiment_markdown

    results = [ArmResult(seed, arm, {"gt_ctr": 0.2 + seed / 100, "gt_right_tool_share": None,
                                     "relevance": 0.4, "tool_query_share": 0.6,
                                     "mean_words": 4.0}, {"utility_gap": 0.1},
                         {"gate": "rejected", "seconds": 12.0})
               for seed in (0, 1, 2) for arm in ("sft", "raw", "full")]
    rows = aggregate(results, ["sft", "raw", "full"])
    text = experiment_markdown(rows, results, {"seeds": [0, 1, 2]}, findings(rows))
    assert "| full dual-level | 3 | 0.2100 [" in text
    assert text.count("\n| 2 | ") == 3  # one per-seed row per arm


def test_toolrec_arm_replays_the_toolrec_form(sim: Simulator, logged) -> None:  # type: ignore[no-untyped-def]
    """The ToolRec form through the worker's own window functions: skipped tool queries
    weigh 0, clicked ones ≥ 1 (frequency-aware), and w_u moves around 1 with the user's
    CTR against the partition's sketch (filled by the history)."""
    from loop.experiment import history_events

    history = history_events(sim, logged, 40, seed=0)
    samples = replay_samples(logged, _config("full_toolrec"), history)
    assert [s.clicked for s in samples] == [s.clicked for s in replay_samples(
        logged, _config("raw"))]
    for s in samples:
        expected = max(s.w_activity, s.w_tool) if s.clicked else min(s.w_activity, s.w_tool)
        assert s.weight == pytest.approx(expected)  # auditable from the row
        assert 0.75 <= s.w_activity <= 1.25
    assert all(s.w_tool == 0.0 and s.weight == 0.0 for s in samples
               if s.is_tool_query and not s.clicked)
    clicked_tools = [s.w_tool for s in samples if s.is_tool_query and s.clicked]
    assert min(clicked_tools) >= 1.0 and max(clicked_tools) > 1.5
    skipped_users = [s.w_activity for s in samples if not s.clicked]
    assert min(skipped_users) < 0.95 < 1.05 < max(skipped_users)
