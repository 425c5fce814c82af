"""Samples → KTO data: stable hold-out, replay mix, per-class re-normalization, shuffling."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from streams.schemas import validate_payload
from trainer.config import TrainingConfig
from trainer.data import (
    InsufficientDataError,
    build_eval_set,
    build_training_set,
    is_holdout,
    renormalize_class_weights,
    split_holdout,
    synthetic_samples,
    to_kto_dataset,
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


def test_holdout_is_stable_per_sample_and_about_its_share() -> None:
    ids = [f"r{i}:{p}" for i in range(2000) for p in (1, 2)]
    mask = is_holdout(ids, 0.1)
    assert 0.08 < mask.mean() < 0.12
    # membership depends on the id only, not on which other rows are in the batch
    assert is_holdout(ids[::7], 0.1).tolist() == mask[::7].tolist()
    assert not is_holdout(ids, 0.0).any()


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


def test_eval_set_is_holdout_only_and_topped_up_from_older_data() -> None:
    new, old = _table(200, seed=6), _table(2000, seed=7, start_ts=1)
    config = TrainingConfig(holdout_share=0.1, max_eval_samples=64)
    held = build_eval_set(new, old, config)
    assert held.num_rows == 64
    assert all(is_holdout(held.column("sample_id").to_pylist(), 0.1))
    assert held.column_names == ["sample_id", "prompt", "completion", "label", "weight"]


def test_kto_dataset_has_trl_columns_and_rows_are_valid_samples() -> None:
    rows = synthetic_samples(30, seed=8)
    for row in rows:
        validate_payload(row)  # the synthetic rows honour the Sample contract
    ts = build_training_set(pa.Table.from_pylist(rows), None, TrainingConfig(holdout_share=0))
    dataset = to_kto_dataset(ts.table)
    assert dataset.column_names == ["prompt", "completion", "label", "weight"]
    assert len(dataset) == 30
    assert all(c.startswith("- ") and c.endswith("\n") for c in dataset["completion"])
