"""The CTR reward model (trainer.reward): features, the weighted fit, the pair labelling."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.reward import (
    FEATURES,
    ListCandidate,
    Suggestion,
    fit_ctr,
    label_pairs,
    list_features,
)

F = {name: i for i, name in enumerate(FEATURES)}


def test_features_name_rank_off_list_repeats_and_positions() -> None:
    lines = [Suggestion("turn on wifi", "wifi.on"), Suggestion("open maps", "maps.open"),
             Suggestion("wifi settings please", "wifi.on"), Suggestion("tell a joke", None)]
    rows = list_features(lines, ("bt.on", "wifi.on"), [0.5, 0.1, 0.4, 0.2])
    assert rows.shape == (4, len(FEATURES))
    assert rows[0, F["rank2"]] == 1 and rows[0, F["repeat_tool"]] == 0
    assert rows[1, F["off_list"]] == 1 and rows[1, F["pos2"]] == 1
    assert rows[2, F["rank2"]] == 1 and rows[2, F["repeat_tool"]] == 1
    assert rows[3, F["rank1"]:F["repeat_tool"] + 1].sum() == 0  # no tool: the baseline
    assert rows[3, F["pos4plus"]] == 1 and rows[0, F["pos2"]:].sum() == 0
    assert list(rows[:, F["relevance"]]) == [0.5, 0.1, 0.4, 0.2]
    assert rows[2, F["words"]] == pytest.approx(3 / 12)


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose click probability is 0.4 at rank 1 and 0.05 off the list."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, len(FEATURES)))
    x[:, 0] = 1
    top = rng.random(n) < 0.5
    x[top, F["rank1"]] = 1
    x[~top, F["off_list"]] = 1
    y = (rng.random(n) < np.where(top, 0.4, 0.05)).astype(float)
    return x, y


def test_fit_recovers_click_rates() -> None:
    x, y = _synthetic(4_000, 0)
    model = fit_ctr(x, y, l2=0.01)
    p = model.predict(x)
    assert p[x[:, F["rank1"]] == 1].mean() == pytest.approx(0.4, abs=0.03)
    assert p[x[:, F["off_list"]] == 1].mean() == pytest.approx(0.05, abs=0.02)
    assert model.list_reward(x[:2]) == pytest.approx(float(p[:2].sum()))
    assert model.list_reward(x[:0]) == 0.0


def test_weights_decide_which_clicks_count() -> None:
    """Rows of weight 0 leave the fit as if they were absent (calibration acts through
    the weights): here noise rows that click everything off the list."""
    x, y = _synthetic(2_000, 1)
    noise = x.copy()
    noise[:, F["rank1"]], noise[:, F["off_list"]] = 0, 1
    both_x = np.vstack([x, noise])
    both_y = np.concatenate([y, np.ones(len(noise))])
    weights = np.concatenate([np.ones(len(x)), np.zeros(len(noise))])
    alone = fit_ctr(x, y).coef
    assert np.allclose(fit_ctr(both_x, both_y, weights).coef, alone, atol=1e-6)
    assert not np.allclose(fit_ctr(both_x, both_y).coef, alone, atol=0.1)


def test_fit_refuses_bad_input() -> None:
    x, y = _synthetic(10, 2)
    with pytest.raises(ValueError, match="features must be"):
        fit_ctr(x[:, :3], y)
    with pytest.raises(ValueError, match="weights"):
        fit_ctr(x, y, np.zeros(len(y)))
    with pytest.raises(ValueError, match="no samples"):
        fit_ctr(x[:0], y[:0])


def test_pairs_take_the_best_and_worst_distinct_lists() -> None:
    a = ListCandidate((Suggestion("a", None),))
    b = ListCandidate((Suggestion("b", "t"),))
    c = ListCandidate((Suggestion("c", None), Suggestion("d", None)))
    assert label_pairs([a, b, c], [0.2, 0.5, 0.1], min_gap=0.05) == (1, 2)
    assert label_pairs([a, b, a], [0.2, 0.5, 0.2], min_gap=0.0) == (1, 0)  # ties: earlier
    assert label_pairs([a, b], [0.2, 0.22], min_gap=0.05) is None  # no preference worth it
    assert label_pairs([a, a], [0.1, 0.9], min_gap=0.0) is None  # one distinct list
    empty = ListCandidate(())
    assert label_pairs([empty, a], [0.0, 0.3], min_gap=0.0) is None  # nothing to show
