"""Cross-validation over the tuning rows (retrieval.crossval, `toolrec tools cv`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from retrieval import crossval
from retrieval.crossval import (
    PERTURBATIONS,
    POOLED,
    CvSpec,
    _best_recall,
    _xy,
    cross_validate,
    format_cv,
)
from retrieval.evaluate import EvalRow
from retrieval.retriever import Retriever
from toolrec.errors import RetrievalError


def test_spec_names_what_is_wrong() -> None:
    with pytest.raises(RetrievalError, match="unknown linker features"):
        CvSpec(drop=("no_such_feature",))
    with pytest.raises(RetrievalError, match="folds=1"):
        CvSpec(folds=1)
    with pytest.raises(RetrievalError, match="perturb must be"):
        CvSpec(perturb="shout")  # type: ignore[arg-type]


def test_perturbations_change_only_the_surface() -> None:
    assert PERTURBATIONS["question-mark"]("wifi on") == "wifi on?"
    assert PERTURBATIONS["question-mark"]("is it on?") == "is it on?"
    assert PERTURBATIONS["filler"]("wifi on") == "hey, wifi on"


def test_recall_at_the_target_precision() -> None:
    prob = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    right = np.array([True, True, False, True, False])
    has_gold = np.array([True, True, True, True, False])  # the 3rd names the wrong tool
    assert _best_recall(prob, right, has_gold, precision=0.75) == 0.75  # 3 of the top 4
    assert _best_recall(prob, right, has_gold, precision=1.0) == 0.5
    assert _best_recall(prob, np.zeros(5, dtype=bool), has_gold, precision=0.9) == 0.0


def test_recall_at_the_operating_point_caps_precision_and_false_links() -> None:
    def rows(n_no_tool_after: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """By falling probability: 6 right, 1 no-tool, 3 right, then no-tool rows."""
        has_gold = np.array([True] * 6 + [False] + [True] * 3 + [False] * n_no_tool_after)
        return np.linspace(1, 0, len(has_gold)), has_gold.copy(), has_gold

    def operating(prob: np.ndarray, right: np.ndarray, has_gold: np.ndarray) -> float:
        return _best_recall(prob, right, has_gold, precision=0.90, max_false_links=0.05)

    # 10 no-tool rows: linking past the first one links 10 % of them, so only the top 6
    prob, right, has_gold = rows(9)
    assert operating(prob, right, has_gold) == pytest.approx(6 / 9)
    assert _best_recall(prob, right, has_gold, precision=0.90) == 1.0  # no cap: all 9
    # 20 no-tool rows: one is 5 %, and the top 10 hold 9 right (precision 0.90): all 9
    prob, right, has_gold = rows(19)
    assert operating(prob, right, has_gold) == 1.0
    # the same with the two most probable rows naming the wrong tool: precision 7/10
    right[:2] = False
    assert operating(prob, right, has_gold) == 0.0


class _BestOnly:
    """A retriever stand-in whose ranking names only the best tool (the text's first word)."""

    def ranking(self, signals: str) -> tuple[None, str, float]:
        return None, signals.split()[0], 0.0


def test_extra_feature_adds_one_column_or_several(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [EvalRow(id=str(i), text=t, gold=None, split="dev")
            for i, t in enumerate(["a x", "b y", "a z"])]
    shipped = np.arange(6.0).reshape(3, 2)
    monkeypatch.setattr(crossval, "linker_xy", lambda *_: (shipped, np.zeros(3)))
    fake: Any = _BestOnly()
    texts = [r.text for r in rows]

    def one(t: Sequence[str], best: Sequence[str]) -> np.ndarray:
        return np.array([float(b == "a") for b in best])

    def two(t: Sequence[str], best: Sequence[str]) -> np.ndarray:
        return np.array([[float(b == "a"), float(b == "b")] for b in best])

    x, _ = _xy(fake, rows, texts, [1], one)
    assert x.tolist() == [[1, 1], [3, 0], [5, 1]]
    x, _ = _xy(fake, rows, texts, [0, 1], two)
    assert x.tolist() == [[0, 1, 1, 0], [2, 3, 0, 1], [4, 5, 1, 0]]
    assert _xy(fake, rows, texts, [0, 1], None)[0].tolist() == shipped.tolist()
    with pytest.raises(RetrievalError, match=r"one row of values per text.*got \(2,\)"):
        _xy(fake, rows, texts, [0], lambda t, b: np.zeros(2))


@pytest.mark.slow
def test_cross_validation_decides_every_row_out_of_fold(retriever: Retriever) -> None:
    report = cross_validate(retriever, CvSpec(repeats=1, folds=2, drop=("advice",),
                                              contrast_weight=1.0))
    spoken = report["scores"]["spoken"]
    assert 0.5 < spoken["recall@1"][0] <= 1 and 0 < spoken["recall"][0] <= spoken["recall@1"][0]
    assert report["rows"]["spoken"] > 0 and "report" not in str(report["rows"])
    assert set(report["scores"]["generated"]) == {"false_link_rate"}
    assert "spoken/asr" in format_cv(report) and "spoken@report" in report["scores"]
    assert {"forms/question", "forms/indirect"} <= set(report["scores"])
    pooled = report["scores"][POOLED]
    assert 0.5 < pooled["no_tool_auc"][0] <= 1
    assert 0 < pooled["recall_at_operating"][0] <= pooled["recall@1"][0]
    assert "no_tool_auc" not in report["scores"]["generated"]
    assert report["rows"]["contrast"] > 0 and "contrast/question" in report["scores"]


def test_the_false_link_cap_reaches_every_fold(retriever: Retriever) -> None:
    """`max_false_links` is passed to each fold's fit with the fold's no-tool rows: a cap of
    0 raises every fold's threshold, so fewer rows link than with precision alone (≈ 20 s;
    it fails when `_one_repeat` drops the cap)."""
    spec = CvSpec(repeats=1, folds=2)
    plain = cross_validate(retriever, spec)["scores"]
    capped = cross_validate(retriever, replace(spec, max_false_links=0.0))["scores"]
    for name in ("spoken", "forms"):
        assert capped[name]["recall"][0] < plain[name]["recall"][0]
        assert capped[name]["false_link_rate"][0] <= plain[name]["false_link_rate"][0]
