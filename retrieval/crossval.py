"""Cross-validation of the reranker and the linker on the tuning rows only (`toolrec tools cv`).

The held-out rows (catalog `test`, the fresh set) are never read: this is how a change
to linking is chosen without spending them. The rows are those `toolrec tools fit-linker`
fits on — the tuning rows (catalog `dev`, all 833 spoken rows: its `report` half is spent
after nine looks and tunes too; the `forms` set of question and indirect-need forms) plus
the training-only rows (no-tool texts, contrast pairs). Per repeat (a salt on the text hash
that assigns folds) and per outer fold:

1. the reranker is fitted on the other folds' tuning rows that have a gold tool;
2. every row is ranked with it (it reorders the top candidates only when `rerank` is on;
   off, the ranking is the fused one and the fold's reranker changes nothing);
3. the linker is fitted on the other folds' rows by the shipped rule (spoken rows weighted
   by `spoken_weight`, its threshold from its own inner out-of-fold predictions at
   `link_target_precision`);
4. the fold's rows are decided, so every decision is out-of-fold, threshold included.
   With `perturb`, the decided text is each row's text changed the same way (a '?' after
   it, a spoken filler before it), ranked again: the fit sees the rows as written, so this
   measures what a surface change that the rows lack does to the decisions.

Reported per set (and per kind of the spoken and forms sets), mean ± sd over repeats: R@1
of the ranking the linker reads, and linking precision, recall and the no-tool false-link rate,
as `toolrec tools eval` defines them, plus the best recall any threshold reaches at the
target precision (the linker's ranking quality, apart from the threshold rule), and on
sets with both kinds of row the no-tool AUC (texts with a tool against texts without, by
link probability) and the best recall at issue 14's operating point (precision >= 0.90,
false links <= 5 %); every tuning set pooled ("all tuning") as well; the
false-link rate of the training-only no-tool texts, and the contrast pairs' scores per form
(training-only rows are folded like the tuning rows: in 4 of 5 training folds, decided in
the fifth, never in the tuning sets' lines). `drop` leaves linker features out (an
ablation); `extra` adds one feature or several computed from each row's text and best tool (an
experiment's model, e.g. `retrieval.crossencoder`). Imports `retrieval.evaluate` for the rows
and features, `retrieval.crossencoder` for its AUC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from retrieval.crossencoder import auc
from retrieval.evaluate import (
    CONTRAST_WEIGHT,
    SPOKEN_WEIGHT,
    EvalRow,
    linker_rows,
    linker_xy,
    reranker_choices,
    source_weights,
    text_groups,
)
from retrieval.linker import FEATURES, fit_link_model
from retrieval.rerank import RerankModel, fit_rerank_model
from retrieval.retriever import Retriever
from toolrec.errors import RetrievalError

REPORTED = ("spoken", "catalog", "forms")  # the tuning splits (the reranker's rows too)
NO_TOOL = ("negatives", "generated")  # training-only no-tool texts: only false links count
# Training-only pairs with tool and no-tool rows (when `contrast_weight` > 0): folded like
# the negatives (never the reranker's rows), scored on their own line per form, outside the
# tuning sets' scores.
CONTRAST = "contrast"
# Surface changes of a text that should not change its decision (`CvSpec.perturb`).
PERTURBATIONS: dict[str, Callable[[str], str]] = {
    "question-mark": lambda t: t.rstrip().rstrip("?") + "?", "filler": lambda t: f"hey, {t}"}
Perturbation = Literal["none", "question-mark", "filler"]
# More linker features from the texts and their best-ranked tool ids (`CvSpec.extra`): one
# column (shape n) or several (n x k).
ExtraFeature = Callable[[Sequence[str], Sequence[str]], np.ndarray]
_COLUMNS = {"recall@1": "R@1", "precision": "link precision", "recall": "link recall",
            "false_link_rate": "false links", "recall_at_target": "best R at target P",
            "no_tool_auc": "no-tool AUC", "recall_at_operating": "best R @P.90,FL.05"}
# Issue 14's operating point (its targets on the independent set): linking precision
# >= 0.90 with at most 5 % of no-tool texts linked. The best recall a threshold reaches
# there, and how well the link probability ranks texts with a tool above those without
# (AUC), judge a change by what the targets ask, apart from the shipped threshold rule.
OPERATING_PRECISION, OPERATING_FALSE_LINKS = 0.90, 0.05
POOLED = "all tuning"  # every tuning set's rows together


@dataclass(frozen=True)
class CvSpec:
    """How to cross-validate: repeats × folds, the linker's precision target, ablations, a
    perturbation of the decided texts, an extra feature (None: the shipped features)."""

    repeats: int = 3
    folds: int = 5
    target_precision: float = 0.95
    max_false_links: float | None = None
    spoken_weight: float = SPOKEN_WEIGHT
    contrast_weight: float = CONTRAST_WEIGHT
    drop: tuple[str, ...] = ()
    perturb: Perturbation = "none"
    extra: ExtraFeature | None = None

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.folds < 2:
            raise RetrievalError(f"cross-validation needs repeats >= 1 and folds >= 2, got "
                                 f"repeats={self.repeats}, folds={self.folds}")
        unknown = sorted(set(self.drop) - set(FEATURES))
        if unknown:
            raise RetrievalError(f"drop names unknown linker features {unknown}; choose "
                                 f"from {list(FEATURES)}")
        if self.perturb != "none" and self.perturb not in PERTURBATIONS:
            raise RetrievalError(f"perturb must be 'none' or one of {sorted(PERTURBATIONS)}, "
                                 f"got {self.perturb!r}")


@dataclass(frozen=True)
class _Rows:
    """The encoded training rows, computed once for every fold."""

    rows: list[EvalRow]
    source: np.ndarray  # spoken / catalog / negatives / generated
    kind: np.ndarray
    split: np.ndarray
    has_gold: np.ndarray
    signals: list[Any]
    choices: list[tuple[np.ndarray, int] | None]  # reranker rows (None: no gold in top)
    decided: tuple[list[EvalRow], list[Any]]  # the rows as decided and their signals


def cross_validate(retriever: Retriever, spec: CvSpec) -> dict[str, Any]:
    """Out-of-fold linking scores over the tuning rows (see the module docstring)."""
    pairs = linker_rows(retriever, contrast=spec.contrast_weight > 0)
    rows = [r for r, _ in pairs]
    signals = retriever.link_signals([r.text for r in rows])
    data = _Rows(rows, np.array([n for _, n in pairs]), np.array([r.kind for r in rows]),
                 np.array([r.split for r in rows]),
                 np.array([r.gold is not None for r in rows]), signals,
                 reranker_choices(retriever, rows, signals),
                 _decided(retriever, rows, signals, spec.perturb))
    runs = [_one_repeat(retriever, data, spec, repeat) for repeat in range(spec.repeats)]
    return {"spec": {"repeats": spec.repeats, "folds": spec.folds,
                     "target_precision": spec.target_precision,
                     "max_false_links": spec.max_false_links, "drop": list(spec.drop),
                     "spoken_weight": spec.spoken_weight,
                     "contrast_weight": spec.contrast_weight, "perturb": spec.perturb,
                     "rerank": retriever.config.rerank,
                     **({"extra": getattr(spec.extra, "__qualname__", "extra")}
                        if spec.extra else {})},
            "rows": {str(s): int((data.source == s).sum()) for s in np.unique(data.source)},
            "scores": _summarise(runs)}


def _decided(retriever: Retriever, rows: list[EvalRow], signals: list[Any],
             perturb: Perturbation) -> tuple[list[EvalRow], list[Any]]:
    """The rows the folds decide, with their signals: the rows themselves, or their
    perturbed texts ranked again."""
    if perturb == "none":
        return rows, signals
    changed = [replace(r, text=PERTURBATIONS[perturb](r.text)) for r in rows]
    return changed, retriever.link_signals([r.text for r in changed])


def _one_repeat(retriever: Retriever, data: _Rows, spec: CvSpec,
                repeat: int) -> dict[str, dict[str, float]]:
    """Every row decided out-of-fold once; repeat 0 uses the fit's own fold groups."""
    groups = text_groups([r.text for r in data.rows], salt=f"{repeat}:" if repeat else "")
    fold = groups % spec.folds
    keep = [i for i, name in enumerate(FEATURES) if name not in spec.drop]
    weight = source_weights(list(data.source), spec.spoken_weight, spec.contrast_weight)
    prob = np.zeros(len(data.rows))
    right = np.zeros(len(data.rows), dtype=bool)  # the best tool is the gold tool
    linked = np.zeros(len(data.rows), dtype=bool)
    for k in range(spec.folds):
        test = fold == k
        with _using(retriever, _fit_reranker(data, ~test)):
            x, y = _xy(retriever, data.rows, data.signals, keep, spec.extra)
            xd, yd = (x, y) if data.decided[0] is data.rows else _xy(retriever, *data.decided,
                                                                     keep, spec.extra)
        model = fit_link_model(x[~test], y[~test], groups[~test] // spec.folds,
                               target_precision=spec.target_precision,
                               sample_weight=weight[~test], no_tool=~data.has_gold[~test],
                               max_false_links=spec.max_false_links)
        prob[test] = [model.probability(f) for f in xd[test]]
        linked[test] = prob[test] >= model.threshold
        right[test] = yd[test] == 1
    return _scores(data, linked, right, prob, spec.target_precision)


def _xy(retriever: Retriever, rows: list[EvalRow], signals: list[Any], keep: list[int],
        extra: ExtraFeature | None) -> tuple[np.ndarray, np.ndarray]:
    """The kept linker features (and the extra columns, last) of each row, and y."""
    x, y = linker_xy(retriever, rows, signals)
    if extra is None:
        return x[:, keep], y
    best = [retriever.ranking(s)[1] for s in signals]
    columns = np.asarray(extra([r.text for r in rows], best), dtype=np.float64)
    if columns.ndim not in (1, 2) or columns.shape[0] != len(rows):
        raise RetrievalError(f"the extra feature must give one value or one row of values "
                             f"per text: shape ({len(rows)},) or ({len(rows)}, k), got "
                             f"{columns.shape}")
    return np.hstack([x[:, keep], columns.reshape(len(rows), -1)]), y


def _fit_reranker(data: _Rows, train: np.ndarray) -> RerankModel:
    picked = [c for c, t, s in zip(data.choices, train, data.source, strict=True)
              if c is not None and t and s in REPORTED]
    return fit_rerank_model([x for x, _ in picked], [g for _, g in picked])


@contextmanager
def _using(retriever: Retriever, model: RerankModel) -> Iterator[None]:
    """The retriever ranks with this reranker inside the block (its fitted one after):
    the fold's model, without writing a file or loading the index again."""
    saved = retriever._reranker
    retriever._reranker = model
    try:
        yield
    finally:
        retriever._reranker = saved


def _scores(data: _Rows, linked: np.ndarray, right: np.ndarray, prob: np.ndarray,
            target: float) -> dict[str, dict[str, float]]:
    """R@1 and linking precision / recall / false-link rate per set, spoken split and
    kind (spoken and forms rows have one), and the best recall any threshold reaches at
    the target precision on the set's own out-of-fold probabilities (the linker's ranking
    quality, whatever the threshold rule). The spoken `report` half is the one the
    retriever's rules were not built on (it was read as aggregates only): its scores are
    the least flattering."""
    scored = (*REPORTED, *([CONTRAST] if (data.source == CONTRAST).any() else []))
    masks = {s: data.source == s for s in scored}
    masks[POOLED] = np.isin(data.source, REPORTED)
    spoken = masks["spoken"]
    masks |= {f"spoken@{p}": spoken & (data.split == p) for p in sorted(set(data.split[spoken]))}
    masks |= {f"{s}/{k}": masks[s] & (data.kind == k) for s in scored
              for k in sorted(set(data.kind[masks[s]]) - {""})}
    out = {s: {"false_link_rate": float(linked[data.source == s].mean())} for s in NO_TOOL}
    for name, mask in masks.items():
        gold, none = mask & data.has_gold, mask & ~data.has_gold
        hits, n_linked = int((linked & right & mask).sum()), int((linked & mask).sum())
        out[name] = {"recall@1": float(right[gold].mean()) if gold.any() else 0.0,
                     "precision": hits / n_linked if n_linked else 1.0,
                     "recall": hits / int(gold.sum()) if gold.any() else 0.0,
                     "false_link_rate": float(linked[none].mean()) if none.any() else 0.0,
                     "recall_at_target": _best_recall(prob[mask], right[mask],
                                                      data.has_gold[mask], precision=target)}
        if gold.any() and none.any():
            out[name] |= {"no_tool_auc": auc(prob[mask], data.has_gold[mask]),
                          "recall_at_operating": _best_recall(
                              prob[mask], right[mask], data.has_gold[mask],
                              precision=OPERATING_PRECISION,
                              max_false_links=OPERATING_FALSE_LINKS)}
    return out


def _best_recall(prob: np.ndarray, right: np.ndarray, has_gold: np.ndarray, *,
                 precision: float, max_false_links: float = 1.0) -> float:
    """The highest recall of a threshold on prob whose precision reaches `precision` and
    that links at most `max_false_links` of the rows without a gold tool."""
    order = np.argsort(-prob, kind="stable")
    hits = np.cumsum(right[order])
    false_links = np.cumsum(~has_gold[order]) / max(int((~has_gold).sum()), 1)
    ok = np.flatnonzero((hits / np.arange(1, len(hits) + 1) >= precision)
                        & (false_links <= max_false_links))
    n_gold = int(has_gold.sum())
    return float(hits[ok].max() / n_gold) if len(ok) and n_gold else 0.0


def _summarise(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, list[float]]]:
    """[mean, sd] of each score over the repeats."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, metrics in runs[0].items():
        values = {m: [run[name][m] for run in runs] for m in metrics}
        out[name] = {m: [float(np.mean(v)), float(np.std(v))] for m, v in values.items()}
    return out


def format_cv(report: dict[str, Any]) -> str:
    """The report as aligned text (the `toolrec tools cv` output)."""
    spec = report["spec"]
    lines = [f"out-of-fold over the tuning rows {report['rows']}: {spec['repeats']} repeats x "
             f"{spec['folds']} folds, linker precision target {spec['target_precision']}, "
             f"spoken weight {spec['spoken_weight']}, contrast weight "
             f"{spec['contrast_weight']}, rerank {'on' if spec['rerank'] else 'off'}"
             f", dropped {spec['drop'] or 'none'}, decided texts perturbed: {spec['perturb']}"
             + (f", extra feature {spec['extra']}" if "extra" in spec else ""),
             f"  {'rows':<18}" + "".join(f"{h:>20}" for h in _COLUMNS.values())]
    for name, m in report["scores"].items():
        cells = "".join(f"{m[k][0]:>12.3f} ± {m[k][1]:.3f}" if k in m else f"{'':>20}"
                        for k in _COLUMNS)
        lines.append(f"  {name:<18}{cells}")
    return "\n".join(lines)
