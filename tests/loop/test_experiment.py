"""The experiment's pure parts: logged events from simulated traffic, per-arm samples through
the streaming stage's own window + calibration functions, and the aggregation."""

from __future__ import annotations

import json
import random
from pathlib import Path

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


def _result(seed: int, arm: str, ctr: float) -> ArmResult:
    return ArmResult(seed, arm, {"gt_ctr": ctr, "gt_right_tool_share": 0.1, "relevance": 0.3,
                                 "tool_query_share": 0.9, "mean_words": 3.0},
                     refresh={"steps": 0 if arm == "sft" else 20},
                     curve=[{"step": 0 if arm == "sft" else 20, "gt_ctr": ctr,
                             "gt_right_tool_share": 0.1, "relevance": 0.3}])


def test_paired_differences_are_holm_corrected() -> None:
    from loop.experiment import calibration_json, paired_vs_raw
    from loop.metrics import mean_interval, paired_p

    noise = (0.004, -0.003, 0.001, -0.002, 0.0)
    results = [_result(seed, arm, 0.30 + bump + (noise[seed] if arm in ("tool", "sft") else 0.0)
                       + 0.001 * seed * (arm == "full"))
               for seed in range(5)
               for arm, bump in (("sft", -0.01), ("raw", 0.0), ("full", 0.02), ("tool", 0.0))]
    vs = paired_vs_raw(results, ["sft", "raw", "full", "tool"])
    assert set(vs) == {"sft", "full", "tool"} and all(v["comparisons"] == 3 for v in vs.values())
    diffs = [0.02 + 0.001 * s for s in range(5)]
    assert vs["full"]["p"] == pytest.approx(paired_p(diffs))
    # full has the smallest p: Holm step 1 of 3, interval at 1 − 0.05/3
    assert vs["full"]["level"] == pytest.approx(1 - 0.05 / 3) and vs["full"]["reject"]
    assert (vs["full"]["abs"]["lo"], vs["full"]["abs"]["hi"]) == pytest.approx(
        mean_interval(diffs, 1 - 0.05 / 3)[1:])
    assert vs["full"]["rel"]["mean"] == pytest.approx(sum(d / 0.30 for d in diffs) / 5)
    # tool is pure noise around raw: not rejected, its interval covers 0
    assert not vs["tool"]["reject"] and vs["tool"]["abs"]["lo"] < 0 < vs["tool"]["abs"]["hi"]
    record = calibration_json(results, ["sft", "raw", "full", "tool"], {}, 12.0)
    assert record["arms"]["sft"]["kto_steps"] == 0 and record["arms"]["full"]["seeds"] == 5
    assert set(record["arms"]["full"]) >= {"gt_ctr", "relevance", "right_tool_share"}
    assert set(record["vs_raw"]["full"]) >= {"abs", "rel"}
    assert set(record["vs_raw"]["full"]["abs"]) >= {"mean", "lo", "hi"}
    curve = record["curves"]["full"]
    assert [p["step"] for p in curve] == [0, 20]  # step 0: the SFT baseline of each seed
    assert curve[0]["mean"] == pytest.approx(0.29)


def test_published_section_keeps_the_rest_of_results_md(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from loop.experiment import SECTION_END, SECTION_START, replace_section

    path = tmp_path / "RESULTS.md"
    path.write_text("# Loop results\n\n## make demo\n\n14 min.\n")
    first = replace_section(path, "# Calibration experiment\n\nrun 1\n")
    assert first.startswith("# Loop results\n\n## make demo\n\n14 min.\n\n" + SECTION_START)
    path.write_text(first + "\nafter\n")
    second = replace_section(path, "# Calibration experiment\n\nrun 2\n")
    assert "run 1" not in second and "run 2" in second and second.endswith("\nafter\n")
    assert second.count(SECTION_START) == second.count(SECTION_END) == 1


@pytest.mark.timeout(900)
def test_experiment_runs_end_to_end_on_the_tiny_model(tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """The whole protocol at a tiny size: logged traffic, seven arms replayed and trained
    with checkpoints, every checkpoint evaluated, the outputs written."""
    import json

    import torch

    from loop.config import ExperimentConfig
    from loop.experiment import Experiment, write_outputs
    from loop.models import tiny
    from toolrec.config import load_settings

    torch.set_num_threads(1)
    start = tiny(tmp_path_factory.mktemp("exp-tiny"))
    out = tmp_path_factory.mktemp("exp-out")
    cfg = ExperimentConfig(out_dir=out, seeds=(0, 1), model="tiny", users=6,
                           requests_per_user=3, history_per_user=10, eval_turns=3,
                           max_steps=2, eval_every=1, batch_size=4, generation_batch=4,
                           objective="clicks", engine="torch",  # reward: its own test below
                           publish=True, publish_json=out / "published.json",
                           publish_markdown=out / "RESULTS.md")
    experiment = Experiment(load_settings(), cfg, start, echo=lambda line: None)
    results = experiment.run()
    assert {(r.seed, r.arm) for r in results} == {(s, a) for s in (0, 1) for a in cfg.arms}
    for r in results:
        assert r.metrics["requests"] == 3
        if r.arm != "sft":
            assert r.refresh["steps"] == 2 and [p["step"] for p in r.curve] == [1, 2]
            assert r.metrics["gt_ctr"] == r.curve[-1]["gt_ctr"]
    paths = write_outputs(results, cfg, experiment.wall_s)
    record = json.loads(paths["published_json"].read_text())
    assert set(record["arms"]) == set(cfg.arms) and "raw" not in record["vs_raw"]
    assert record["arms"]["full_toolrec"]["kto_steps"] == 2
    assert [p["step"] for p in record["curves"]["full"]] == [0, 1, 2]
    assert "Learning curves" in paths["report"].read_text()
    assert "## Calibration experiment" in paths["published_markdown"].read_text()


def test_merge_results_joins_disjoint_seeds_and_refuses_overlap_or_mismatch(
    tmp_path: Path,
) -> None:
    from loop.errors import LoopError
    from loop.experiment import merge_results

    def part(name: str, seed: int, wall: float, users: int = 3) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({
            "config": {"seeds": [seed], "users": users, "out_dir": name, "publish": False},
            "wall_s": wall, "results": [{"seed": seed, "arm": "sft", "metrics": {}}]}))
        return path

    target = tmp_path / "merged" / "results.json"
    merge_results([part("a.json", 0, 5.0), part("b.json", 1, 7.0)], target)
    merged = json.loads(target.read_text())
    assert merged["config"]["seeds"] == [0, 1]
    assert merged["wall_s"] == 7.0  # side by side: the longest part
    assert [r["seed"] for r in merged["results"]] == [0, 1]
    with pytest.raises(LoopError, match="more than one run"):
        merge_results([part("c.json", 1, 1.0)], target)
    with pytest.raises(LoopError, match="different settings"):
        merge_results([part("d.json", 2, 1.0, users=4)], target)


def test_reward_rows_pair_the_best_and_worst_list_per_prompt(sim: Simulator, logged) -> None:  # type: ignore[no-untyped-def]
    """GQR's CTR alignment data: the CTR model is fitted on the logged lines with the arm's
    weights, every candidate list is scored, and each prompt with a clear preference gives
    one desirable and one undesirable whole list; the ground truth is only a diagnostic."""
    from generator.prompt import END_OF_TURN
    from loop.experiment import build_candidates, reward_rows

    rng = random.Random(1)
    pool = [r.shown for r in logged.records]
    lists = [[r.shown, rng.choice(pool), rng.choice(pool)] for r in logged.records]
    tools = [tuple(t.id for t in sim.intents.tools[:4])] * len(lists)
    candidates = build_candidates(sim, logged, lists, tools, sim.encode)
    assert len(candidates.request_ids) == len(logged.records)
    assert all(len(f) == 3 for f in candidates.features)
    for arm in ("raw", "full"):
        samples = replay_samples(logged, _config(arm))
        rows, info = reward_rows(samples, candidates, l2=1.0, min_gap=0.02)
        assert info["pairs"] * 2 == len(rows) > 0
        assert set(info["ctr_model"]) >= {"bias", "relevance", "repeat_tool"}
        assert info["pair_true_gap"] is not None and info["reward_true_corr"] is not None
        chosen = [r for r in rows if r["clicked"]]
        rejected = [r for r in rows if not r["clicked"]]
        assert [r["request_id"] for r in chosen] == [r["request_id"] for r in rejected]
        assert all(r["completion"].endswith(END_OF_TURN) and r["weight"] == 1.0 for r in rows)
        pairs = zip(chosen, rejected, strict=True)
        assert all(c["completion"] != r["completion"] for c, r in pairs)
        assert {r["prompt"] for r in rows} <= {i.prompt for i in logged.impressions}
    # the oracle ranks by the true CTR: its chosen lists are the truly best ones
    _, oracle = reward_rows(samples, candidates, l2=1.0, min_gap=0.02, oracle=True)
    assert oracle["pair_true_gap"] >= max(info["pair_true_gap"], 0.02)


@pytest.mark.timeout(600)
def test_reward_objective_runs_end_to_end_on_ctranslate2(tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """The reward objective at a tiny size on the int8 engine: candidates sampled, the CTR
    model fitted per arm, whole-list KTO trained and every checkpoint converted and judged."""
    import torch

    from loop.config import ExperimentConfig
    from loop.experiment import Experiment, write_outputs
    from loop.models import tiny
    from toolrec.config import load_settings

    torch.set_num_threads(1)
    start = tiny(tmp_path_factory.mktemp("exp-tiny-reward"))
    out = tmp_path_factory.mktemp("exp-reward-out")
    cfg = ExperimentConfig(out_dir=out, seeds=(0,), arms=("sft", "raw", "full"), model="tiny",
                           users=6, requests_per_user=3, history_per_user=10, eval_turns=3,
                           max_steps=2, eval_every=0, batch_size=4, generation_batch=4,
                           objective="reward", candidates=2, min_reward_gap=0.0,
                           engine="ctranslate2")
    experiment = Experiment(load_settings(), cfg, start, echo=lambda line: None)
    results = experiment.run()
    markdown = write_outputs(results, cfg, experiment.wall_s)["markdown"].read_text()
    assert "## CTR reward model" in markdown and "| 0 | full |" in markdown
    trained = [r for r in results if r.arm != "sft"]
    assert len(trained) == 2
    for r in trained:
        assert r.refresh["steps"] == 2 and r.diagnostics["pairs"] > 0
        assert r.refresh["n_train"] == 2 * r.diagnostics["pairs"]
        assert r.metrics["requests"] == 3
