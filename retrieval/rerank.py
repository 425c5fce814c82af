"""A learned reranking stage over the fused ranking's top candidates.

The fusion in `retrieval.retriever` blends fixed shares of evidence. The reranker looks at
the top `RERANK_DEPTH` tools again with evidence the blend flattens, and learns how much
each piece counts from the tuning rows (catalog `dev`, every spoken row; never the held-out
ones: catalog `test`, the fresh set). Features are generic — never a tool's identity — so
it cannot memorise a set:

    fused score, its gap to the top, the query-similarity, word-overlap and polarity parts,
    cosine to the tool's centroid, to its best phrasing, to its name, to its description,
    and whether the tool answers questions (its description shows or tells), alone and
    crossed with the text being a question.

It is a listwise choice model (conditional logit: p(tool | the query's candidates) =
softmax of w·features; this project's design); with `a` the weight it gives the raw fused
score, the reranked score is logit / a, i.e. the fused score
plus a correction Δ = (logit − a·score) / a in the fused score's own units. Context boosts
stay inside the fused score, so they keep their meaning. Weights are data
(`retrieval/data/reranker.json`), fitted by `toolrec tools fit-reranker`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.linker import read_fitted
from toolrec.errors import RetrievalError

RERANKER_RESOURCE = "reranker.json"
RERANK_DEPTH = 10
RERANK_FEATURES = ("score", "gap", "query", "lexical", "polarity", "centroid", "phrase",
                   "name", "description", "answers", "question_x_answers")


@dataclass(frozen=True)
class RerankModel:
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    meta: dict[str, Any]

    @property
    def score_weight(self) -> float:
        """The logit per unit of raw fused score (`a` in the module docstring): within one
        query both `score` and `gap` (score minus the top score) move with it."""
        return float(self.weights[0] / self.scale[0] + self.weights[1] / self.scale[1])

    def correction(self, x: np.ndarray) -> np.ndarray:
        """Δ for each candidate row of x (features in `RERANK_FEATURES` order); the part
        every candidate of the query shares is dropped, so Δ of the top candidate's
        score-linear part is zero."""
        logit = (x - self.mean) / self.scale @ self.weights + self.bias
        a = self.score_weight
        return np.asarray((logit - a * x[:, 0]) / a - (logit[0] - a * x[0, 0]) / a)

    def to_json(self) -> dict[str, Any]:
        return {"features": list(RERANK_FEATURES), "weights": self.weights.round(6).tolist(),
                "bias": round(self.bias, 6), "mean": self.mean.round(6).tolist(),
                "scale": self.scale.round(6).tolist(), "meta": self.meta}


def fit_conditional_logit(groups: list[np.ndarray], gold: list[int], *, l2: float = 1.0,
                          iterations: int = 50) -> np.ndarray:
    """Weights w maximising Σ_q log softmax(X_q w)[gold_q] − l2/2·|w|² (Newton's method):
    the listwise choice model of "which of these candidates is the one"."""
    d = groups[0].shape[1]
    w = np.zeros(d)
    for _ in range(iterations):
        grad, hess = -l2 * w, -l2 * np.eye(d)
        for x, g in zip(groups, gold, strict=True):
            z = x @ w
            p = np.exp(z - z.max())
            p /= p.sum()
            mean = p @ x
            grad += x[g] - mean
            hess -= (x * p[:, None]).T @ x - np.outer(mean, mean)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w


def fit_rerank_model(groups: list[np.ndarray], gold: list[int], *, l2: float = 1.0,
                     meta: dict[str, Any] | None = None) -> RerankModel:
    """Listwise fit over each query's candidates (`gold[q]` = the gold tool's row)."""
    stacked = np.concatenate(groups)
    mean, scale = stacked.mean(axis=0), stacked.std(axis=0) + 1e-9
    w = fit_conditional_logit([(x - mean) / scale for x in groups], gold, l2=l2)
    model = RerankModel(w, 0.0, mean, scale, dict(meta or {}))
    if model.score_weight <= 0:
        raise RetrievalError("the fitted reranker gives the fused score no positive weight; "
                             "the tuning rows are too few or mislabelled")
    return model


def load_rerank_model(path: Path | None = None) -> RerankModel:
    """The fitted reranker (the packaged `data/reranker.json` by default)."""
    text, source = read_fitted(RERANKER_RESOURCE, path)
    try:
        data = json.loads(text)
        if data["features"] != list(RERANK_FEATURES):
            raise ValueError(f"fitted on features {data['features']}")
        return RerankModel(np.array(data["weights"]), float(data["bias"]),
                           np.array(data["mean"]), np.array(data["scale"]), dict(data["meta"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise RetrievalError(f"reranker {source} is malformed or stale ({exc}); refit with "
                             "`toolrec tools fit-reranker`") from exc
