"""The promotion gate's evidence rule and its SFT-baseline check: pure `gate` cases, then
refreshes of the tiny model against a real Delta lake and registry (no broker needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.samples import synthetic_samples
from lakehouse.tables import read_table, table_version
from lakehouse.writer import write_samples
from trainer.cli import describe_record
from trainer.config import GateTolerances
from trainer.data import split_holdout
from trainer.evaluate import Evidence, gate, margin_difference_se
from trainer.refresh import WEIGHTS_FILE, Refresher
from trainer.registry import Registry

from .test_refresh import LOOSE, _config, _fresh_adapter, _lake

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TOL = GateTolerances(reward_margin=0.0, format_valid_rate=0.05)


# --------------------------------------------------------------------------- pure gate


def test_a_regression_against_the_sft_baseline_rejects_even_within_the_champion_tolerance(
) -> None:
    baseline = {"reward_margin": 0.0, "format_valid_rate": 0.90}
    champion = {"reward_margin": 0.05, "format_valid_rate": 0.86}  # 0.04 below: it passed
    candidate = {"reward_margin": 0.06, "format_valid_rate": 0.82}  # 0.04 below the champion
    alone = gate(candidate, champion, TOL)
    assert alone.outcome == "promote"  # the champion-only gate would let the drift compound
    result = gate(candidate, champion, TOL, baseline=baseline,
                  reference_name="the champion v3", baseline_name="the SFT baseline v1")
    assert result.outcome == "reject" and not result.promote
    assert result.checks["format_valid_rate"]["ok"] is True
    assert result.baseline_checks["format_valid_rate"]["ok"] is False
    assert result.baseline_checks["format_valid_rate"]["reference"] == 0.90
    assert result.reasons == ["format_valid_rate regressed against the SFT baseline v1: "
                              "0.82 < 0.9 - 0.05"]
    assert result.record()["baseline_checks"]["reward_margin"]["ok"] is True


def test_too_little_evidence_withholds_promotion_but_not_a_rejection() -> None:
    short = Evidence(clicks=3, nonclicks=50, min_clicks=10, min_nonclicks=30)
    assert not short.enough and short.measurable
    metrics = {"reward_margin": None, "format_valid_rate": 0.9}
    result = gate(metrics, dict(metrics), TOL, evidence=short)
    assert result.outcome == "not_enough_evidence" and not result.promote
    assert result.reasons[0].startswith("not enough evidence: 3 held-out clicks and 50")
    assert result.record()["evidence"] == {
        "heldout_clicks": 3, "heldout_nonclicks": 50, "min_heldout_clicks": 10,
        "min_heldout_nonclicks": 30, "enough": False}
    worse = gate({**metrics, "format_valid_rate": 0.5}, metrics, TOL, evidence=short)
    assert worse.outcome == "reject"  # a measured regression is a rejection regardless
    enough = Evidence(clicks=10, nonclicks=30, min_clicks=10, min_nonclicks=30)
    assert gate(metrics, dict(metrics), TOL, evidence=enough).outcome == "promote"


def test_the_margin_difference_standard_error_is_clustered_by_request() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    labels = np.array([True] * 6 + [False] * 10)
    weights = np.ones(16)
    a, b = rng.normal(size=16), rng.normal(size=16)
    alone = [f"r{i}" for i in range(16)]
    assert margin_difference_se(a, a, labels, weights, alone) == 0.0
    d = a - b  # independent requests, equal weights: the textbook two-sample SE
    expected = np.sqrt(d[labels].var() / 6 + d[~labels].var() / 10)
    assert margin_difference_se(a, b, labels, weights, alone) == pytest.approx(expected)
    # two clicks of one request that move together count as one piece of evidence
    paired = alone.copy()
    paired[1] = "r0"
    b2 = b.copy()
    b2[1] = a[1] - (a[0] - b[0])  # same difference as its sibling
    assert margin_difference_se(a, b2, labels, weights, paired) > margin_difference_se(
        a, b2, labels, weights, alone)


# --------------------------------------------------------------------------- refreshes


def _held_counts(lake: Any, share: float) -> tuple[int, int]:
    """Held-out clicks and non-clicks of the whole samples table, counted independently."""
    _, held = split_holdout(read_table(lake, "samples"), share)
    clicks = sum(held.column("clicked").to_pylist())
    return clicks, held.num_rows - clicks


def test_not_enough_evidence_keeps_the_champion_records_why_and_the_next_refresh_accumulates(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    lake = _lake(tmp_path)
    config = _config(tmp_path, tiny_model_dir, gate=LOOSE, max_steps=1, eval_prompts=1,
                     holdout_share=0.3, max_eval_samples=64, min_heldout_clicks=8,
                     min_heldout_nonclicks=8, min_new_samples=8)
    refresher = Refresher(lake, config)
    registry = refresher.registry
    registry.import_adapter(_fresh_adapter(tiny_model_dir, tmp_path / "sft"), tiny_model_dir,
                            promote=True)
    write_samples(lake, synthetic_samples(24, seed=21))
    clicks, nonclicks = _held_counts(lake, 0.3)
    assert clicks < 8  # the premise: too few held-out clicks for the margin

    first = refresher.run()
    assert first.outcome == "not_enough_evidence" and first.version == "v2"
    assert "not enough evidence" in first.reason and not first.announced
    v2 = registry.get("v2")
    assert registry.champion().version == "v1"  # type: ignore[union-attr]
    assert v2.status == "candidate" and v2.decision["outcome"] == "not_enough_evidence"
    assert v2.decision["evidence"] == {
        "heldout_clicks": clicks, "heldout_nonclicks": nonclicks, "min_heldout_clicks": 8,
        "min_heldout_nonclicks": 8, "enough": False}
    assert v2.n_holdout == clicks + nonclicks
    assert v2.metrics["candidate"]["reward_margin"] is None  # not measured on thin evidence
    assert v2.metrics["reference"]["reward_margin"] is None
    shown = "\n".join(describe_record(v2))  # what `toolrec models show v2` prints
    assert "gate: not_enough_evidence" in shown and "reason: not enough evidence" in shown
    assert f"evidence: {clicks} held-out clicks (min 8), {nonclicks} non-clicks (min 8): " \
           "NOT enough" in shown
    assert "training weights: clicked: n=" in shown

    # the training weights are kept with the run: summary in the row, per sample in a file
    weights = pq.read_table(v2.adapter_dir / WEIGHTS_FILE)
    assert weights.num_rows == v2.n_train
    assert set(weights.column_names) >= {"sample_id", "weight_calibrated", "weight_trained"}
    summary = v2.metrics["train_weights"]
    assert summary["clicked"]["n"] == v2.n_desirable
    assert summary["all"]["max"] == pytest.approx(max(weights.column("weight_trained").to_pylist()))
    assert summary["all"]["max"] <= config.training.weight_max

    # more traffic: the next refresh reads since the champion's version again (nothing was
    # promoted), so the earlier held-out requests stay and the evidence grows
    write_samples(lake, synthetic_samples(120, seed=22, start_ts=1_767_400_000_000))
    assert refresher.pending() == 120  # the daemon waits for data newer than v2's attempt
    second = refresher.run()
    v3 = registry.get("v3")
    assert v3.data_version_from is None and v3.data_version_to == table_version(lake, "samples")
    more_clicks, more_nonclicks = _held_counts(lake, 0.3)
    assert (more_clicks, more_nonclicks) != (clicks, nonclicks)
    assert v3.decision["evidence"]["heldout_clicks"] == more_clicks >= 8
    assert v3.decision["evidence"]["heldout_nonclicks"] == more_nonclicks >= 8
    assert v3.n_holdout == more_clicks + more_nonclicks > v2.n_holdout
    assert v3.metrics["candidate"]["reward_margin"] is not None  # measured now
    assert v3.metrics["candidate"]["reward_margin_se_vs_champion"] > 0
    assert second.outcome == "promoted" and v3.decision["outcome"] == "promote"
    assert registry.champion().version == "v3"  # type: ignore[union-attr]


def _anti_preference_adapter(tmp_path: Path, model_dir: Path, start: Path,
                             rows: list[dict[str, Any]]) -> Path:
    """An adapter trained from `start` on `rows` with the labels flipped: it prefers the
    suggestions users skipped, so its held-out reward margin is far below `start`'s."""
    lake = _lake(tmp_path)
    config = _config(tmp_path, model_dir, gate=LOOSE, max_steps=8, learning_rate=1e-2,
                     holdout_share=0.0, min_heldout_clicks=0, min_heldout_nonclicks=0,
                     eval_prompts=1)
    Registry(lake, config.training).import_adapter(start, model_dir, promote=True)
    write_samples(lake, [{**r, "clicked": not r["clicked"]} for r in rows])
    record = Refresher(lake, config).run().record
    assert record is not None
    return record.adapter_dir


def test_candidates_are_gated_against_the_fixed_sft_baseline_too(
    tmp_path: Path, tiny_model_dir: Path, tiny_sft: Any
) -> None:
    """v1 = the tiny SFT (the baseline); v2 = a worse model that became champion anyway.
    A candidate that barely moves from v2 passes against v2 but not against v1."""
    rows = synthetic_samples(64, seed=23)
    worse = _anti_preference_adapter(tmp_path / "flipped", tiny_model_dir,
                                     tiny_sft.adapter_dir, rows)
    lake = _lake(tmp_path)
    tol = LOOSE.model_copy(update={"reward_margin": 0.05})
    config = _config(tmp_path, tiny_model_dir, generator=tiny_sft.config, gate=tol,
                     max_steps=1, learning_rate=1e-9, eval_prompts=1, holdout_share=0.3,
                     max_eval_samples=64)
    registry = Registry(lake, config.training)
    registry.import_adapter(tiny_sft.adapter_dir, tiny_model_dir, promote=True)
    registry.import_adapter(worse, tiny_model_dir, promote=True)
    assert registry.baseline().version == "v1"  # type: ignore[union-attr]
    assert registry.champion().version == "v2"  # type: ignore[union-attr]
    write_samples(lake, rows)

    result = Refresher(lake, config).run()
    v3 = registry.get("v3")
    assert v3.parent == "v2"
    assert (v3.metrics["reference_version"], v3.metrics["baseline_version"]) == ("v2", "v1")
    baseline, champion, candidate = (v3.metrics[s] for s in ("baseline", "reference",
                                                              "candidate"))
    # margins are measured against the baseline: its own is 0 by definition
    assert baseline["reward_margin"] == 0.0
    assert champion["reward_margin"] < -0.1  # the premise: v2 is clearly worse than v1
    assert candidate["reward_margin"] == pytest.approx(champion["reward_margin"], abs=0.01)
    checks, baseline_checks = v3.decision["checks"], v3.decision["baseline_checks"]
    assert checks["reward_margin"]["ok"] is True  # within tolerance of the champion ...
    assert baseline_checks["reward_margin"]["ok"] is False  # ... not of the baseline
    assert set(baseline_checks) >= {"format_valid_rate", "duplicate_rate", "length_drift"}
    assert result.outcome == "rejected" and v3.status == "rejected"
    assert [r.split(":")[0] for r in v3.decision["reasons"]] == [
        "reward_margin regressed against the SFT baseline v1"]
    assert registry.champion().version == "v2"  # type: ignore[union-attr]


def test_the_weight_cap_holds_in_a_refresh_with_two_clicks(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    lake = _lake(tmp_path)
    config = _config(tmp_path, tiny_model_dir, gate=LOOSE, max_steps=1, eval_prompts=1,
                     holdout_share=0.0, min_per_class=1, min_heldout_clicks=0,
                     min_heldout_nonclicks=0, weight_max=10.0, max_train_samples=200)
    rows = synthetic_samples(200, seed=24)
    for i, row in enumerate(rows):
        row["clicked"] = i in (5, 150)
        row["weight"] = 1.0
    write_samples(lake, rows)
    result = Refresher(lake, config).run()
    assert result.record is not None
    weights = pq.read_table(result.record.adapter_dir / WEIGHTS_FILE).to_pylist()
    clicked = [w["weight_trained"] for w in weights if w["label"]]
    assert clicked == pytest.approx([10.0, 10.0])  # renormalisation alone would give 50
    summary = result.record.metrics["train_weights"]
    assert summary["clicked"]["max"] == pytest.approx(10.0)
    assert summary["ratio"] == pytest.approx(20 / 100)  # the ratio gave way, as documented
    assert pa.table({"w": [w["weight_calibrated"] for w in weights]}).column("w").to_pylist() \
        == [1.0] * 200


def test_held_out_log_probs_from_shared_prefix_trees_equal_one_forward_per_sample(
    tiny_model_dir: Path, tiny_sft: Any
) -> None:
    import numpy as np
    import torch
    from peft import PeftModel
    from trl.data_utils import common_prefix_length

    from generator.loading import load_model
    from trainer.config import TrainingConfig
    from trainer.evaluate import completion_logps

    model, tokenizer = load_model(tiny_model_dir)
    model = PeftModel.from_pretrained(model, str(tiny_sft.adapter_dir))
    rows = synthetic_samples(21, seed=25)  # 7 requests of 3 nested siblings
    prompts = [r["prompt"] for r in rows]
    completions = [r["completion"] for r in rows]
    training = TrainingConfig(max_length=512)
    tree = completion_logps(model, tokenizer, prompts, completions, training,
                            requests=[r["request_id"] for r in rows])
    plain = []
    with torch.no_grad():
        for prompt, completion in zip(prompts, completions, strict=True):
            prompt_ids = tokenizer(text=prompt)["input_ids"]
            ids = tokenizer(text=prompt + completion)["input_ids"][:512]
            split = common_prefix_length(prompt_ids, ids)  # where TRL starts the completion
            logp = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
            plain.append(sum(float(logp[j - 1, ids[j]]) for j in range(split, len(ids))))
    np.testing.assert_allclose(tree, plain, rtol=1e-4, atol=1e-4)
    assert len(set(np.round(tree, 3))) > 10  # real, distinct values
