"""Ground-truth and observed metrics of simulated traffic, per model version or round.

Definitions (per group of served requests):
- `gt_ctr`: mean over requests of the reference user's expected P(any click) — the true
  quality of what was shown, free of who happened to be asked and of click noise;
- `gt_right_tool_share`: Σ expected reference clicks on the intended tool / Σ expected
  reference clicks — the share of clicks that invoke the right tool;
- `relevance`: mean cosine of a shown suggestion to the hidden intent;
- `obs_ctr`: share of requests whose user actually clicked (what the system can see);
- `obs_tool_click_share`: share of actual clicks on tool-invoking suggestions;
- `tool_query_share`: share of shown suggestions that invoke a tool; `mean_words`: mean
  suggestion length in words; `obs_ctr_<cohort>`: observed CTR per activity cohort.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from loop.population import COHORTS
from loop.simulator import Judgement, Reaction, Shown, Turn


@dataclass(frozen=True)
class Record:
    """One simulated request end to end. Lives in the simulator only."""

    round: int
    turn: Turn
    request_id: str
    model_version: str
    shown: tuple[Shown, ...]
    judgement: Judgement
    reaction: Reaction
    latency_s: float = 0.0


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def summarize(records: Sequence[Record]) -> dict[str, Any]:
    """The metrics of the module docstring over `records`."""
    shown = [s for r in records for s in r.shown]
    clicks = [r for r in records if r.reaction.clicked]
    tool_clicks = sum(
        1 for r in clicks for s in r.shown if s.position == r.reaction.position and s.tool_id
    )
    ref_ctr = sum(r.judgement.ref_ctr for r in records)
    out: dict[str, Any] = {
        "requests": len(records),
        "suggestions": len(shown),
        "clicks": len(clicks),
        "obs_ctr": _ratio(len(clicks), len(records)),
        "obs_tool_click_share": _ratio(tool_clicks, len(clicks)),
        "gt_ctr": _ratio(ref_ctr, len(records)),
        "gt_right_tool_share": _ratio(sum(r.judgement.ref_right_tool for r in records), ref_ctr),
        "relevance": _mean([c for r in records for c in r.judgement.relevance]),
        "utility": _mean([u for r in records for u in r.judgement.utility]),
        "tool_query_share": _ratio(sum(s.tool_id is not None for s in shown), len(shown)),
        "mean_words": _mean([len(s.text.split()) for s in shown]),
        "latency_s": _mean([r.latency_s for r in records]),
    }
    for cohort in COHORTS:
        mine = [r for r in records if r.turn.user.cohort == cohort]
        out[f"obs_ctr_{cohort}"] = _ratio(sum(r.reaction.clicked for r in mine), len(mine))
        out[f"requests_{cohort}"] = len(mine)
    return out


def group(records: Iterable[Record], key: Callable[[Record], Any]) -> dict[Any, list[Record]]:
    groups: dict[Any, list[Record]] = defaultdict(list)
    for record in records:
        groups[key(record)].append(record)
    return dict(groups)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a Student-t interval over independent replicates (seeds)."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    mean = sum(values) / n
    if n == 1:
        return (mean, mean, mean)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return (mean, mean - half, mean + half)


def paired_p(differences: Sequence[float]) -> float | None:
    """Two-sided p-value of a paired t-test of mean difference 0 (None with < 2 pairs)."""
    n = len(differences)
    if n < 2:
        return None
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    if sd == 0:
        return 0.0 if mean != 0 else 1.0
    t = abs(mean) / (sd / math.sqrt(n))
    return max(0.0, min(1.0, 2 * (1 - _t_cdf(t, n - 1))))


def holm(pvalues: dict[str, float | None], alpha: float = 0.05) -> dict[str, dict[str, Any]]:
    """Holm's step-down correction over the comparisons with a p-value: per name the
    adjusted p, whether it is rejected at `alpha`, and the confidence level of its interval
    (the level of its Holm step; from the first non-rejection on, that step's level — so
    the interval excludes 0 exactly when the comparison is rejected)."""
    ranked = sorted((p, name) for name, p in pvalues.items() if p is not None)
    m, out, running, stop = len(ranked), {}, 0.0, None
    for i, (p, name) in enumerate(ranked):
        running = max(running, min(1.0, (m - i) * p))
        if stop is None and p > alpha / (m - i):
            stop = i
        step = i if stop is None else stop
        out[name] = {"p_holm": running, "reject": stop is None,
                     "level": 1 - alpha / (m - step), "comparisons": m}
    return out


def _t_quantile(p: float, df: int) -> float:
    """Student-t quantile (scipy-free): bisection on the regularized incomplete beta."""
    lo, hi = 0.0, 100.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _t_cdf(t: float, df: int) -> float:
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t >= 0 else tail


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by its continued fraction (Numerical Recipes)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log(1 - x))
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1 - x)
    c, d, f = 1.0, 1.0 - (a + b) * x / (a + 1), 0.0
    d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
    f = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
            c = 1.0 + numerator / c
            c = c if abs(c) > 1e-300 else 1e-300
            f *= c * d
        if abs(c * d - 1.0) < 1e-12:
            break
    return math.exp(log_front) * f / a



def record_json(record: Record) -> dict[str, Any]:
    """One record for the simulator's own log (it holds the hidden truth: never send it)."""
    turn = record.turn
    return {
        "round": record.round,
        "user": turn.user.index,
        "cohort": turn.user.cohort,
        "activity": round(turn.user.activity, 4),
        "turn": turn.index,
        "request": turn.request.payload(),
        "intent": {"kind": turn.intent.kind, "key": turn.intent.key},
        "request_id": record.request_id,
        "model_version": record.model_version,
        "shown": [{"position": s.position, "text": s.text, "tool_id": s.tool_id}
                  for s in record.shown],
        "relevance": [round(x, 4) for x in record.judgement.relevance],
        "utility": [round(x, 4) for x in record.judgement.utility],
        "match": list(record.judgement.match),
        "ref_ctr": round(record.judgement.ref_ctr, 5),
        "clicked": record.reaction.position,
        "events": [{"type": e.type, "position": e.position, "success": e.success}
                   for e in record.reaction.events],
        "latency_s": round(record.latency_s, 3),
    }
