"""A query-wise CTR predictor used as a reward model, and reward-labelled list pairs (GQR §3.2).

Why: one click is a noisy label. A shown suggestion is clicked with probability ≈ 0.1–0.3
even when it is what the user wanted, and heavy users click anything; KTO on single clicks
fits the few clicked lines instead of what they have in common (loop/RESULTS.md). GQR pools
the evidence first: a CTR predictor p_k = P(c_k | q_user, q_1 … q_k) is fitted on the
impression/click log, and the generator is aligned to lists it scores high (their
"KTO_ctr"/"DPO_ctr" arms beat KTO on raw clicks by a wide margin). This module is that
pooling, sized to the few hundred samples a refresh here sees: GQR fits a BERT on millions of
impressions; on hundreds a logistic model on a handful of observable features is what the
data can carry (`FEATURES`):

- `relevance`: cosine (MiniLM, the retrieval encoder) between the suggestion and the turn
  (query + response) — on-topic suggestions are the clickable ones;
- the rank of the suggestion's linked tool in the prompt's retrieved tool list (1, 2, 3, 4+),
  a linked tool the prompt did not list, or no tool (the baseline) — what the turn makes
  likely is what retrieval ranked first;
- `repeat_tool`: its tool was already suggested higher in the same list (GQR's C_k, the
  nearby exposed suggestions; a second line for one tool is a wasted slot);
- `words`: length (GQR notes a CTR model's pull towards long queries; here it is a feature
  the fit can weigh either way);
- the display position (2, 3, 4+; 1 the baseline): a nuisance term that absorbs position bias
  during the fit. A list is scored at the positions its lines would be shown at, since that is
  what a user sees.

The fit is weighted: the sample weights are the calibration's (DESIGN.md §4), so calibrating
the clicks changes what the reward model believes; weights 1 is "raw clicks". Weights are
rescaled to mean 1 over the rows of positive weight (a row of weight 0 is as if absent) and
the coefficients (bias excepted) get an L2 penalty, so the fit is defined even when a
feature never meets a click.

List reward (GQR Eq. 4, a single-choice component — a user taps at most one suggestion):
r(x, y) = Σ_k p_k. `label_pairs` turns scored candidate lists of one prompt into a KTO pair:
the best list desirable, the worst undesirable (GQR Algorithm 1 with random candidates in
place of beam search), when their rewards differ by at least `min_gap`.

`candidate_features` computes every candidate's features with one encoder call per prompt
and `pair_rows` writes a pair as the sample table's rows; both are shared by the experiment
(`loop.experiment`) and the refresh (`trainer.listwise`). Pure numpy; no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from generator.prompt import format_response

__all__ = [
    "FEATURES",
    "CtrModel",
    "ListCandidate",
    "Suggestion",
    "candidate_features",
    "fit_ctr",
    "label_pairs",
    "list_features",
    "pair_rows",
]

FEATURES = ("bias", "relevance", "rank1", "rank2", "rank3", "rank4plus", "off_list",
            "repeat_tool", "words", "pos2", "pos3", "pos4plus")
MAX_WORDS = 12  # length feature saturates here (suggestions are short queries)
Encode = Callable[[list[str]], Any]  # texts → unit vectors, one row per text


@dataclass(frozen=True)
class Suggestion:
    """One line of a list as the reward model sees it."""

    text: str
    tool_id: str | None


@dataclass(frozen=True)
class ListCandidate:
    """A candidate list for one prompt: its lines in display order."""

    suggestions: tuple[Suggestion, ...]

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(s.text for s in self.suggestions)


def list_features(suggestions: Sequence[Suggestion], prompt_tools: Sequence[str],
                  relevance: Sequence[float]) -> np.ndarray:
    """(n, len(FEATURES)) rows, one per suggestion in display order (position = index + 1).
    `relevance[k]` is suggestion k's cosine to the turn."""
    rows = np.zeros((len(suggestions), len(FEATURES)))
    seen: set[str] = set()
    for k, (suggestion, cosine) in enumerate(zip(suggestions, relevance, strict=True)):
        row = rows[k]
        row[0] = 1.0
        row[1] = cosine
        tool = suggestion.tool_id
        if tool is not None:
            if tool in prompt_tools:
                row[2 + min(list(prompt_tools).index(tool), 3)] = 1.0
            else:
                row[6] = 1.0
            row[7] = float(tool in seen)
            seen.add(tool)
        row[8] = min(len(suggestion.text.split()), MAX_WORDS) / MAX_WORDS
        if k >= 1:
            row[9 + min(k - 1, 2)] = 1.0
    return rows


def candidate_features(turn: str, options: Sequence[ListCandidate],
                       prompt_tools: Sequence[str], encode: Encode) -> list[np.ndarray]:
    """`list_features` of each of one prompt's candidate lists, relevance the cosine of each
    line to `turn` (the query and the response): one encoder call for the turn and every
    line (`encode` returns unit vectors, one row per text)."""
    lines = [s.text for option in options for s in option.suggestions]
    vectors = np.asarray(encode([turn.strip(), *lines]))
    cosines = (vectors[1:] @ vectors[0]).tolist() if lines else []
    features, start = [], 0
    for option in options:
        end = start + len(option.suggestions)
        features.append(list_features(option.suggestions, prompt_tools, cosines[start:end]))
        start = end
    return features


def pair_rows(request_id: str, prompt: str, options: Sequence[ListCandidate],
              pair: tuple[int, int]) -> list[dict[str, Any]]:
    """A `label_pairs` pair as two rows of the sample table's columns: the chosen whole list
    desirable, the rejected one undesirable, weight 1 (the reward model holds the
    calibration), each completion a whole response that ends the turn."""
    return [{"sample_id": f"{request_id}:{'chosen' if label else 'rejected'}",
             "request_id": request_id, "prompt": prompt,
             "completion": format_response(options[index].texts), "clicked": label,
             "weight": 1.0, "closed_ts": 0}
            for label, index in ((True, pair[0]), (False, pair[1]))]


@dataclass(frozen=True)
class CtrModel:
    """A fitted logistic CTR predictor over `FEATURES`."""

    coef: np.ndarray

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Click probability of each row."""
        return _sigmoid(features @ self.coef)

    def list_reward(self, features: np.ndarray) -> float:
        """GQR Eq. 4: expected clicks of the list, Σ_k p_k (0 for an empty list)."""
        return float(self.predict(features).sum()) if len(features) else 0.0

    def describe(self) -> dict[str, float]:
        return {name: round(float(c), 4) for name, c in zip(FEATURES, self.coef, strict=True)}


def fit_ctr(features: np.ndarray, clicked: np.ndarray, weights: np.ndarray | None = None, *,
            l2: float = 1.0, iterations: int = 50) -> CtrModel:
    """Weighted, L2-penalized logistic regression by Newton's method (the log-likelihood is
    concave, so it converges in a few steps; the penalty keeps the Hessian invertible)."""
    x = np.asarray(features, dtype=float)
    y = np.asarray(clicked, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(FEATURES) or len(y) != len(x):
        raise ValueError(f"features must be (n, {len(FEATURES)}) with one label per row")
    if len(x) == 0:
        raise ValueError("no samples to fit a CTR model on")
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    if np.any(w < 0) or not np.any(w > 0):
        raise ValueError("weights must be ≥ 0 with a positive sum")
    w = w * (np.count_nonzero(w) / w.sum())  # mean 1 over the rows that count
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    coef = np.zeros(x.shape[1])
    base = np.clip(np.average(y, weights=w), 1e-3, 1 - 1e-3)
    coef[0] = np.log(base / (1 - base))
    for _ in range(iterations):
        p = _sigmoid(x @ coef)
        gradient = x.T @ (w * (y - p)) - penalty * coef
        curvature = (x * (w * p * (1 - p))[:, None]).T @ x
        hessian = curvature + np.diag(penalty) + 1e-9 * np.eye(len(coef))
        step = np.linalg.solve(hessian, gradient)
        coef = coef + step
        if float(np.abs(step).max()) < 1e-8:
            break
    return CtrModel(coef)


def label_pairs(candidates: Sequence[ListCandidate], rewards: Sequence[float], *,
                min_gap: float) -> tuple[int, int] | None:
    """Indexes (chosen, rejected) of the highest- and lowest-reward non-empty lists among one
    prompt's candidates (ties: the earlier one), or None when they are the same list or
    their rewards lie within `min_gap` (no preference worth training on)."""
    shown = [i for i, c in enumerate(candidates) if c.suggestions]
    if not shown:
        return None
    high = max(shown, key=lambda i: (rewards[i], -i))
    low = min(shown, key=lambda i: (rewards[i], i))
    if candidates[high].texts == candidates[low].texts or rewards[high] - rewards[low] < min_gap:
        return None
    return high, low


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
    return out
