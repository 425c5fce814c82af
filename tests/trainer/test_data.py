"""Samples → KTO data: stable per-request hold-out, replay mix, per-class re-normalization
with the weight cap, recorded training weights, shuffling."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from bench.samples import synthetic_samples
from contracts.events import validate_payload
from trainer.config import TrainingConfig
from trainer.data import (
    InsufficientDataError,
    build_eval_set,
    build_training_set,
    is_holdout,
    renormalize_class_weights,
    split_holdout,
    to_kto_dataset,
    weight_summary,
)

CONFIG = TrainingConfig(holdout_share=0.1, replay_share=0.25, max_train_samples=4000)


def _table(n: int, seed: int = 0, start_ts: int = 1_767_225_600_000) -> pa.Table:
    return pa.Table.from_pylist(synthetic_samples(n, seed=seed, start_ts=start_ts))


def _ratio(weights: np.ndarray, labels: np.ndarray) -> float:
    return float(weights[labels].sum() / weights[~labels].sum())


@pytest.mark.parametrize(
    ("weights", "labels", "expected_ratio"),
    [
        ([1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0], 1.0),  # 1:5 → raised to 1:1
        ([3, 3, 3, 1], [1, 1, 1, 0], 4 / 3),  # 9:1 → lowered to 4:3
        ([1.2, 1, 1, 1], [1, 0, 1, 0], 1.1),  # inside [1, 4/3] → kept
    ],
)
def test_renormalization_clips_the_weighted_class_ratio_and_keeps_mean_one(
    weights: list[float], labels: list[int], expected_ratio: float
) -> None:
    w = np.asarray(weights, dtype=float)
    y = np.asarray(labels, dtype=bool)
    out = renormalize_class_weights(w, y, ratio_min=1.0, ratio_max=4 / 3)
    assert _ratio(out, y) == pytest.approx(expected_ratio)
    assert out.mean() == pytest.approx(1.0)
    for cls in (True, False):  # proportions inside a class are the calibration's: kept
        share_out, share_in = out[y == cls], w[y == cls]
        np.testing.assert_allclose(share_out / share_out.sum(), share_in / share_in.sum())


def test_renormalization_needs_both_classes() -> None:
    with pytest.raises(InsufficientDataError, match="clicks and non-clicks"):
        renormalize_class_weights(np.ones(3), np.ones(3, dtype=bool), ratio_min=1, ratio_max=1.33)


def test_renormalization_caps_weights_after_balancing_the_classes() -> None:
    # 2 clicks among 200: balancing alone gives each click 50; the cap holds them at 10
    labels = np.zeros(200, dtype=bool)
    labels[:2] = True
    w = np.ones(200)
    uncapped = renormalize_class_weights(w, labels, ratio_min=1.0, ratio_max=4 / 3)
    assert uncapped[:2] == pytest.approx([50, 50])
    out = renormalize_class_weights(w, labels, ratio_min=1.0, ratio_max=4 / 3, weight_max=10)
    assert out.max() == pytest.approx(10) and out[:2] == pytest.approx([10, 10])
    # the short class cannot carry its share under the cap: the ratio gives way (20:100),
    # the non-clicks keep their share, so the mean weight drops below 1
    assert _ratio(out, labels) == pytest.approx(0.2)
    assert out[2:].sum() == pytest.approx(100) and out.mean() == pytest.approx(0.6)


def test_the_cap_spreads_the_excess_within_the_class_when_it_can() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros(400, dtype=bool)
    labels[:40] = True  # 10 % clicks: a click needs 5 on average
    w = rng.uniform(0.5, 4.0, size=400)
    out = renormalize_class_weights(w, labels, ratio_min=1.0, ratio_max=4 / 3, weight_max=6)
    assert out.max() <= 6 + 1e-9
    capped = np.isclose(out, 6)
    assert 0 < capped[:40].sum() < 40  # some clicks hit the cap, not all
    assert _ratio(out, labels) == pytest.approx(1.0)  # the ratio bound still holds
    assert out.mean() == pytest.approx(1.0)  # and the mean
    free = labels & ~capped  # the calibration's ratios hold among the uncapped clicks
    np.testing.assert_allclose(out[free] / out[free].sum(), w[free] / w[free].sum())
    assert np.all(np.diff(out[:40][np.argsort(w[:40])]) >= -1e-12)  # order kept
    summary = weight_summary(out, labels)
    assert summary["clicked"]["max"] == pytest.approx(6) and summary["clicked"]["n"] == 40
    assert summary["clicked"]["ess"] <= 40 and summary["ratio"] == pytest.approx(1.0)
    # Kish: equal weights give ESS = n
    assert weight_summary(np.ones(10), labels[:10] | True)["all"]["ess"] == pytest.approx(10)


def test_holdout_is_stable_per_request_and_about_its_share() -> None:
    ids = [f"r{i}" for i in range(4000)]
    mask = is_holdout(ids, 0.1)
    assert 0.08 < mask.mean() < 0.12
    # membership depends on the id only, not on which other rows are in the batch
    assert is_holdout(ids[::7], 0.1).tolist() == mask[::7].tolist()
    assert not is_holdout(ids, 0.0).any()


def test_sibling_suggestions_of_a_request_never_straddle_the_split() -> None:
    table = _table(2000, seed=11)  # 3 suggestions per request
    train, held = split_holdout(table, 0.2)
    train_requests = set(train.column("request_id").to_pylist())
    held_requests = set(held.column("request_id").to_pylist())
    assert train_requests.isdisjoint(held_requests)
    assert 0.1 < held.num_rows / table.num_rows < 0.3
    per_request: dict[str, int] = {}
    for request in held.column("request_id").to_pylist():
        per_request[request] = per_request.get(request, 0) + 1
    assert set(per_request.values()) == {3}  # every held-out request with all its siblings
    # the training set and the eval set follow the same per-request split
    config = TrainingConfig(holdout_share=0.2, max_train_samples=4000, max_eval_samples=4000)
    train_ids = set(build_training_set(table, None, config).table.column("request_id").to_pylist())
    eval_ids = set(build_eval_set(table, None, config).column("request_id").to_pylist())
    assert train_ids == train_requests and eval_ids == held_requests


def test_training_set_mixes_replay_excludes_holdout_and_shuffles() -> None:
    new, old = _table(400, seed=1), _table(800, seed=2, start_ts=1_760_000_000_000)
    ts = build_training_set(new, old, CONFIG)
    train_new, held_new = split_holdout(new, CONFIG.holdout_share)
    _, held_old = split_holdout(old, CONFIG.holdout_share)
    ids = set(ts.table.column("sample_id").to_pylist())
    assert ts.n_new == train_new.num_rows
    assert ts.n_replay == round(ts.n_new * 0.25 / 0.75)
    assert ts.table.num_rows == ts.n_new + ts.n_replay == len(ids)
    assert ids.isdisjoint(held_new.column("sample_id").to_pylist())
    assert ids.isdisjoint(held_old.column("sample_id").to_pylist())
    assert 1.0 - 1e-9 <= ts.weighted_ratio <= 4 / 3 + 1e-9
    assert np.mean(ts.table.column("weight").to_pylist()) == pytest.approx(1.0)
    order = ts.table.column("sample_id").to_pylist()
    assert order != sorted(order, key=lambda s: (int(s.split("-")[1].split(":")[0]), s))
    again = build_training_set(new, old, CONFIG)
    assert again.table.column("sample_id").to_pylist() == order  # deterministic for a seed


def test_training_set_caps_new_samples_to_the_most_recent() -> None:
    config = TrainingConfig(max_train_samples=100, replay_share=0.5, holdout_share=0.0)
    new = _table(400, seed=3)
    ts = build_training_set(new, _table(400, seed=4, start_ts=1), config)
    assert ts.n_new == 50 and ts.n_replay == 50
    newest = sorted(new.column("closed_ts").to_pylist())[-50]
    kept = set(ts.table.column("sample_id").to_pylist())
    by_id = dict(zip(new.column("sample_id").to_pylist(), new.column("closed_ts").to_pylist(),
                     strict=True))
    assert all(by_id[s] >= newest for s in kept if s in by_id)


def test_without_older_data_the_whole_cap_goes_to_new_samples() -> None:
    config = TrainingConfig(max_train_samples=100, replay_share=0.5, holdout_share=0.0)
    ts = build_training_set(_table(400, seed=3), None, config)
    assert (ts.n_new, ts.n_replay) == (100, 0)


def test_one_sided_data_is_insufficient() -> None:
    rows = synthetic_samples(40, seed=5)
    for row in rows:
        row["clicked"] = False
    with pytest.raises(InsufficientDataError, match="0 clicked"):
        build_training_set(pa.Table.from_pylist(rows), None, CONFIG)


def test_eval_set_is_holdout_only_topped_up_from_older_data_clicks_first() -> None:
    new, old = _table(200, seed=6), _table(2000, seed=7, start_ts=1)
    config = TrainingConfig(holdout_share=0.1, max_eval_samples=64)
    held = build_eval_set(new, old, config)
    assert held.num_rows == 64
    assert all(is_holdout(held.column("request_id").to_pylist(), 0.1))
    assert held.column_names == ["sample_id", "request_id", "prompt", "completion", "label",
                                 "weight"]
    new_held = split_holdout(new, 0.1)[1].column("sample_id").to_pylist()
    assert set(new_held) <= set(held.column("sample_id").to_pylist())  # new data first
    # clicks are the scarce class: up to half of the cap goes to them before non-clicks
    labels = held.column("label").to_pylist()
    _, all_held = split_holdout(pa.concat_tables([new, old]), 0.1)
    available = sum(all_held.column("clicked").to_pylist())
    assert sum(labels) == min(available, 32) > 64 * 0.3


def test_training_weights_are_kept_per_sample() -> None:
    new = _table(300, seed=12)
    ts = build_training_set(new, None, TrainingConfig(holdout_share=0.2, weight_max=3.0))
    weights = ts.weights()
    assert weights.column_names == ["sample_id", "request_id", "label", "weight_calibrated",
                                    "weight_trained"]
    calibrated = dict(zip(new.column("sample_id").to_pylist(),
                          new.column("weight").to_pylist(), strict=True))
    rows = weights.to_pylist()
    assert all(r["weight_calibrated"] == calibrated[r["sample_id"]] for r in rows)
    assert max(r["weight_trained"] for r in rows) <= 3.0 + 1e-9
    assert [r["weight_trained"] for r in rows] == ts.table.column("weight").to_pylist()
    summary = ts.weight_summary()
    assert summary["clicked"]["n"] == ts.n_desirable and summary["ratio"] == pytest.approx(
        ts.weighted_ratio)


def test_kto_dataset_has_trl_columns_and_rows_are_valid_samples() -> None:
    rows = synthetic_samples(30, seed=8)
    for row in rows:
        validate_payload(row)  # the synthetic rows honour the Sample contract
    ts = build_training_set(pa.Table.from_pylist(rows), None, TrainingConfig(holdout_share=0))
    dataset = to_kto_dataset(ts.table)
    assert dataset.column_names == ["prompt", "completion", "label", "weight"]
    assert len(dataset) == 30
    assert all(c.startswith("- ") and c.endswith("\n") for c in dataset["completion"])
