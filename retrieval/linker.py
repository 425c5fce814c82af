"""Tool linking as a calibrated decision: does this text invoke its best-scoring tool?

A logistic model over features of the text and of its ranking (this project's design):

    p(link) = σ(w · f(text, ranking) + b)

`f` holds only generic evidence, never a tool's identity, so the model cannot memorise a
set: the best score and its lead over the runner-up, the parts of the best score (query
similarity, word overlap, polarity), the form of the text (question word, polite request,
first-person statement, definition or advice question, length, the share of words the
catalog never uses — trivia names things no tool mentions), whether the best tool
answers questions (its description says it shows or tells something) and that crossed
with the question form — the blanket
question penalty this replaces refused correct "how much battery do I have" links; the
interaction learns that questions go to tools that answer them — and whether the text was
respelled. Weights and the threshold are data (`retrieval/data/linker.json`), fitted by
`toolrec tools fit-linker` on the tuning splits only (catalog `dev`, spoken `tune`); the
threshold is chosen on out-of-fold predictions (the lowest with precision ≥ the target),
and `toolrec tools eval` reports the held-out splits.

Pure numpy; imports `retrieval.lexical` for the question test.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.lexical import is_question
from toolrec.errors import RetrievalError

LINKER_RESOURCE = "linker.json"
FEATURES = (
    "best", "margin", "query_sim", "lexical", "polarity", "question", "question_x_answers",
    "answers", "wh_what", "wh_who_why", "wh_how", "wh_when_where", "aux_first", "polite",
    "first_person", "log_words", "respelled", "unknown_share", "definition", "advice",
)
_ANSWERS = re.compile(r"^(shows|tells|gives|reads|lists|finds|checks|says|reports|speaks|"
                      r"displays|counts)\b", re.IGNORECASE)
_POLITE = re.compile(r"^\s*(can|could|would|will)\s+you\b|\bplease\b", re.IGNORECASE)
_FIRST_PERSON = re.compile(r"^\s*(i|i'm|im|i've|my)\b", re.IGNORECASE)
_DEFINITION = re.compile(
    r"^\s*(what|who)\s*('s|is|are|was|were)\s+(a|an)\b|\bwhat\s+does\s+.+\s+(mean|stand for)"
    r"|^\s*(define|meaning of)\b", re.IGNORECASE)
_ADVICE = re.compile(r"\b(should\s+i|how\s+can\s+i|is\s+it\s+(safe|bad|good|ok|okay)|"
                     r"how\s+(often|long|many|much)\s+should|what's\s+the\s+best|"
                     r"what\s+is\s+the\s+best|good\s+for)\b", re.IGNORECASE)
_FIRST = re.compile(r"^\s*([a-z']+)", re.IGNORECASE)
_WH = {"wh_what": {"what", "what's", "whats"}, "wh_who_why": {"who", "who's", "why"},
       "wh_how": {"how", "how's"}, "wh_when_where": {"when", "where", "where's", "which"},
       "aux_first": {"is", "are", "do", "does", "did", "should", "has", "have", "was", "am"}}


def answers_questions(description: str) -> bool:
    """Whether a tool's description says it shows or tells something (an answer tool)."""
    return bool(_ANSWERS.match(description.strip()))


@dataclass(frozen=True)
class Ranking:
    """What the linker needs from a ranking: the best tool's score parts and runner-up."""

    best: float
    runner_up: float
    query_sim: float
    lexical: float
    polarity: float
    answers: bool
    respelled: bool
    unknown_share: float = 0.0  # share of the text's words the catalog never uses


def features(text: str, r: Ranking) -> np.ndarray:
    """The feature vector f(text, ranking) in `FEATURES` order."""
    first = _FIRST.match(text)
    word = first.group(1).lower() if first else ""
    question = float(is_question(text))
    values = {
        "best": r.best, "margin": r.best - r.runner_up, "query_sim": r.query_sim,
        "lexical": r.lexical, "polarity": r.polarity, "question": question,
        "question_x_answers": question * float(r.answers), "answers": float(r.answers),
        **{name: float(word in words) for name, words in _WH.items()},
        "polite": float(bool(_POLITE.search(text))),
        "first_person": float(bool(_FIRST_PERSON.match(text))),
        "log_words": float(np.log1p(len(text.split()))),
        "respelled": float(r.respelled), "unknown_share": r.unknown_share,
        "definition": float(bool(_DEFINITION.search(text))),
        "advice": float(bool(_ADVICE.search(text))),
    }
    return np.array([values[n] for n in FEATURES], dtype=np.float64)


@dataclass(frozen=True)
class LinkModel:
    """Fitted weights (standardised features), the decision threshold and provenance."""

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    threshold: float
    meta: dict[str, Any]

    def probability(self, f: np.ndarray) -> float:
        z = float((f - self.mean) / self.scale @ self.weights + self.bias)
        return float(1.0 / (1.0 + np.exp(-z)))

    def to_json(self) -> dict[str, Any]:
        return {"features": list(FEATURES), "weights": self.weights.round(6).tolist(),
                "bias": round(self.bias, 6), "mean": self.mean.round(6).tolist(),
                "scale": self.scale.round(6).tolist(), "threshold": round(self.threshold, 4),
                "meta": self.meta}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, source: str) -> LinkModel:
        if data.get("features") != list(FEATURES):
            raise RetrievalError(
                f"linker {source} was fitted on features {data.get('features')}, this code "
                f"computes {list(FEATURES)}; refit with `toolrec tools fit-linker`")
        return cls(np.array(data["weights"]), float(data["bias"]), np.array(data["mean"]),
                   np.array(data["scale"]), float(data["threshold"]), dict(data["meta"]))


def read_fitted(resource: str, path: Path | None) -> tuple[str, str]:
    """A fitted model's JSON text and where it came from (the packaged resource when no
    path is given)."""
    if path is None:
        text = resources.files("retrieval.data").joinpath(resource).read_text("utf-8")
        return text, f"package:{resource}"
    if not path.is_file():
        raise RetrievalError(f"fitted model file {path} does not exist")
    return path.read_text(encoding="utf-8"), str(path)


def load_link_model(path: Path | None = None) -> LinkModel:
    """The fitted linker (the packaged `data/linker.json` by default)."""
    text, source = read_fitted(LINKER_RESOURCE, path)
    try:
        return LinkModel.from_json(json.loads(text), source=source)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise RetrievalError(f"linker {source} is malformed ({exc}); refit with "
                             "`toolrec tools fit-linker`") from exc


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0,
                 iterations: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method on standardised x."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    penalty = np.diag([l2] * d + [0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-xb @ w))
        grad = xb.T @ (p - y) + penalty @ w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + penalty + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit_link_model(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
                   target_precision: float, l2: float = 1.0, folds: int = 5,
                   meta: dict[str, Any] | None = None) -> LinkModel:
    """Fit on all rows; choose the threshold on out-of-fold probabilities: the lowest whose
    precision (correct links / links; y = 1 when the best tool is the right one) reaches
    the target. `groups` assigns rows to folds."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    xs = (x - mean) / scale
    oof = np.zeros(len(y))
    for k in range(folds):
        test = groups % folds == k
        w, b = fit_logistic(xs[~test], y[~test], l2=l2)
        oof[test] = 1.0 / (1.0 + np.exp(-(xs[test] @ w + b)))
    threshold = precision_threshold(oof, y, target_precision)
    w, b = fit_logistic(xs, y, l2=l2)
    return LinkModel(w, b, mean, scale, threshold, dict(meta or {}))


def precision_threshold(prob: np.ndarray, y: np.ndarray, target: float) -> float:
    """The lowest threshold whose links reach the target precision (the highest
    probability when none does)."""
    order = np.argsort(-prob)
    hits = np.cumsum(y[order])
    precision = hits / np.arange(1, len(y) + 1)
    ok = np.flatnonzero(precision >= target)
    if not len(ok):
        return float(prob.max())
    return float(prob[order][ok[-1]])
