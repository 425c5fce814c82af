"""Dual-level calibration of click samples (DESIGN.md §4 and §4b) as pure functions.

Two forms, chosen by `CalibrationConfig.form`: "ours" (§4, below) and "toolrec" (§4b, the
form reported for ToolRec; see "The ToolRec form" further down).

The project's own definition: per user u, decayed counts of shown suggestions I_u and
clicks C_u; a global (per-partition) decayed click rate p̄; smoothed user rate
p_u = (C_u + κ·p̄) / (I_u + κ); activity ratio ρ_u = p_u / p̄.

- activity: clicked → clip(ρ_u^-γ, a_min, a_max); not clicked → clip(ρ_u^+γ, a_min, a_max)
  (a click from a heavy clicker says less; a skip from a rare clicker says little).
- tool: clicked and is_tool_query → λ_tool, × λ_exec if the tool then executed; else 1.
- position (switchable): clicked at k → 1/θ_k; not clicked → θ_k (θ_1 = 1).
- weight = clip(w_activity · w_tool · w_position, w_min, w_max).

The state passed in is the state *before* this impression's outcome is counted.

The ToolRec form (§4b; as described by secondary summaries of the paper, implemented as
described, constants in `CalibrationConfig.toolrec_*`):

- user level: w_u = 1 − α·tanh((uctr_u − μ)/s) for a clicked sample, 1 + α·tanh((uctr_u −
  μ)/s) for a skipped one (α = 0.25). uctr_u is the same smoothed user rate p_u as above.
  μ is the upper quartile of per-user CTR; s is not stated by the summaries — we take the
  interquartile range of per-user CTR (q75 − q25, floored at `toolrec_scale_min`), a
  robust spread of the same distribution, so that a user at the lower quartile is one s
  below μ (tanh(−1) ≈ −0.76: a click weighs ≈1.19) whatever the product's CTR level;
  `toolrec_scale` fixes s instead. Both are estimated online (`CtrSketch`, below).
- tool level: w_s = (1 + γ)^(p^k) for a clicked tool query (γ = 1.25, k = 3), with p the
  tool's usage-frequency quantile (`usage_quantile`); 0 for a skipped tool query; 1 for
  every other sample. A clicked query on the most used tools weighs up to 2.25, on a
  rarely used one ≈1 (p^3 is small until p nears 1).
- weight = max(w_u, w_s) when clicked, min(w_u, w_s) when skipped — so a skipped tool
  query weighs 0 (the summaries' rule: it is left out of training), a clicked one at
  least w_u. Then × w_position when the position term is on (this project's switch,
  as in the first form). `w_min` does not apply here (it would undo the 0); `w_max` does.
- audit columns: `w_activity` = w_u, `w_tool` = w_s, `w_position` as above, `weight` =
  max/min(w_activity, w_tool) · w_position, `user_ctr` = uctr_u. μ, s and p are the
  partition's estimates at the sample's time (`streams.window.toolrec_estimates` reads
  them from the partition state); they are not columns of the row.

Online estimates of the ToolRec form (per source partition, as p̄; the worker's state):
- `CtrSketch`: a histogram of users' current smoothed CTRs over [0, 1] in
  `toolrec_sketch_bins` equal bins (sparse: only occupied bins are stored). Each user sits
  in one bin (remembered in the user's state); when the user's window closes the user
  moves to the bin of the new p_u. μ and the IQR are read by linear interpolation within
  bins (resolution 1/bins = 0.001 by default; per-suggestion CTRs are ≈0.01–0.3). Until
  `toolrec_min_users` users are in the sketch, μ = p̄ and s = max(p̄/2, scale_min).
- tool usage: a decayed count (half-life as the user counts) per tool id of clicks on
  suggestions invoking it — the tool usage the stream observes. p = the tool's mid-rank
  quantile among the tools used so far in the partition: (#tools used less + ½·#tools
  used as much, itself included) / #tools used; a tool never used has p = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from streams.config import CalibrationConfig

MS_PER_DAY = 86_400_000
_LN2 = math.log(2)  # (the same float as the call; decayed_at runs ≈ 20 times per window)


@dataclass(frozen=True)
class Decayed:
    """An exponentially decayed count: `value` as of event time `ts` (ms)."""

    value: float = 0.0
    ts: int = 0

    def at(self, ts: int, half_life_ms: float) -> float:
        """The count as seen at `ts` (no growth for a `ts` in the past)."""
        return decayed_at(self.value, self.ts, ts, half_life_ms)

    def add(self, amount: float, ts: int, half_life_ms: float) -> Decayed:
        """Add `amount` at event time `ts`; out-of-order amounts are decayed instead."""
        return Decayed(*decayed_add(self.value, self.ts, amount, ts, half_life_ms))


def decayed_at(value: float, since: int, ts: int, half_life_ms: float) -> float:
    """A decayed count `value` as of `since`, seen at `ts` (`Decayed.at` without building
    the object: the stream worker reads ≈ 12 of them per closed window)."""
    if ts <= since:
        return value
    return value * decay_factor(since, ts, half_life_ms)


def decay_factor(since: int, ts: int, half_life_ms: float) -> float:
    """What a count as of `since` is multiplied by to be seen at a later `ts`."""
    return math.exp(-_LN2 * (ts - since) / half_life_ms)


def decayed_add(value: float, since: int, amount: float, ts: int,
                half_life_ms: float) -> tuple[float, int]:
    """`Decayed.add` on a (value, since) pair without the objects (the stream worker keeps
    its counts as [value, ts] pairs): `amount` added at `ts`, decayed instead when it is
    older than `since`."""
    if ts >= since:
        return decayed_at(value, since, ts, half_life_ms) + amount, ts
    return value + decayed_at(amount, ts, since, half_life_ms), since


class Weights(NamedTuple):
    """One sample's weight components (a tuple: a frozen dataclass costs ≈ 1 µs more to
    build, and the worker builds one per sample)."""

    user_ctr: float  # p_u, smoothed
    w_activity: float
    w_tool: float
    w_position: float
    weight: float


@dataclass(frozen=True)
class ToolRecState:
    """The ToolRec form's online estimates at a sample's time (see the module docstring)."""

    mu: float  # upper quartile of per-user CTR
    scale: float  # s
    tool_quantile: float = 0.0  # p of the sample's tool (0 when it invokes none)


def clip(value: float, low: float, high: float) -> float:
    """`min(max(value, low), high)` by the comparisons those builtins make, in the same
    order (NaN and ties come out the same), without their calls: ≈ 2.6 clips a window."""
    value = low if low > value else value
    return high if high < value else value


def smoothed_user_ctr(impressions: float, clicks: float, global_ctr: float, kappa: float) -> float:
    return (clicks + kappa * global_ctr) / (impressions + kappa)


def activity_weight(
    clicked: bool, impressions: float, clicks: float, global_ctr: float, cfg: CalibrationConfig
) -> float:
    if not cfg.activity_enabled:
        return 1.0
    rho = smoothed_user_ctr(impressions, clicks, global_ctr, cfg.kappa) / global_ctr
    exponent = -cfg.gamma if clicked else cfg.gamma
    return clip(rho**exponent, cfg.a_min, cfg.a_max)


def tool_weight(
    clicked: bool, is_tool_query: bool, executed: bool, cfg: CalibrationConfig
) -> float:
    if not (cfg.tool_enabled and clicked and is_tool_query):
        return 1.0
    return cfg.lambda_tool * (cfg.lambda_exec if executed else 1.0)


def position_weight(clicked: bool, theta: float, cfg: CalibrationConfig) -> float:
    if not cfg.position_enabled:
        return 1.0
    theta = clip(theta, cfg.theta_min, 1.0)
    return 1.0 / theta if clicked else theta


def toolrec_user_weight(clicked: bool, user_ctr: float, mu: float, scale: float,
                        cfg: CalibrationConfig) -> float:
    """w_u = 1 ∓ α·tanh((uctr − μ)/s): − for a clicked sample, + for a skipped one."""
    if not cfg.activity_enabled:
        return 1.0
    shift = cfg.toolrec_alpha * math.tanh((user_ctr - mu) / scale)
    return 1.0 - shift if clicked else 1.0 + shift


def toolrec_tool_weight(clicked: bool, is_tool_query: bool, quantile: float,
                        cfg: CalibrationConfig) -> float:
    """w_s = (1 + γ)^(p^k) for a clicked tool query, 0 for a skipped one, 1 otherwise."""
    if not (cfg.tool_enabled and is_tool_query):
        return 1.0
    if not clicked:
        return 0.0
    p = clip(quantile, 0.0, 1.0)
    return math.pow(1.0 + cfg.toolrec_gamma, math.pow(p, cfg.toolrec_k))


def _toolrec(clicked: bool, is_tool_query: bool, user_ctr: float, w_position: float,
             state: ToolRecState, cfg: CalibrationConfig) -> tuple[float, float, float]:
    """(w_u, w_s, weight) of the ToolRec form."""
    w_u = toolrec_user_weight(clicked, user_ctr, state.mu, state.scale, cfg)
    w_s = toolrec_tool_weight(clicked, is_tool_query, state.tool_quantile, cfg)
    combined = max(w_u, w_s) if clicked else min(w_u, w_s)
    return w_u, w_s, min(combined * w_position, cfg.w_max)


def calibrate(
    *,
    clicked: bool,
    executed: bool,
    is_tool_query: bool,
    theta: float,
    user_impressions: float,
    user_clicks: float,
    global_ctr: float,
    cfg: CalibrationConfig,
    toolrec: ToolRecState | None = None,
) -> Weights:
    """All weight components of one sample, from the state before its outcome. The
    "toolrec" form needs `toolrec`, its online estimates at the sample's time."""
    return Calibrator(user_impressions, user_clicks, global_ctr, cfg).weights(
        clicked=clicked, executed=executed, is_tool_query=is_tool_query, theta=theta,
        toolrec=toolrec)


class Calibrator:
    """`calibrate` for the samples of one window, which share the user's and the
    partition's state: what depends only on that state (p_u, the activity weight of a
    click and of a skip) is computed once, not per sample, by the same expressions."""

    def __init__(self, user_impressions: float, user_clicks: float, global_ctr: float,
                 cfg: CalibrationConfig) -> None:
        if cfg.form not in ("ours", "toolrec"):
            raise ValueError(f"unknown calibration form {cfg.form!r}; use 'ours' or 'toolrec'")
        self.cfg = cfg
        self.counts = (user_impressions, user_clicks, global_ctr)
        self.user_ctr = smoothed_user_ctr(user_impressions, user_clicks, global_ctr, cfg.kappa)
        # clicked → w_activity, filled when first needed (what raises for a click, e.g.
        # 0 ** -γ, still raises only when the window has one)
        self.activity: dict[bool, float] = {}
        # form "ours": (clicked, executed, is_tool_query, theta) → its Weights, a skip's
        # under (False, False, False, theta): its tool term is 1 whatever the tool inputs
        # (`tool_weight`), so a window's skips — most of its samples — share one entry
        self.known: dict[tuple[bool, bool, bool, float], Weights] = {}

    def weights(self, *, clicked: bool, executed: bool, is_tool_query: bool, theta: float,
                toolrec: ToolRecState | None = None) -> Weights:
        """One sample's weights (`calibrate`'s arguments beyond the shared state)."""
        cfg = self.cfg
        if cfg.form == "toolrec":
            w_position = position_weight(clicked, theta, cfg)
            if toolrec is None:
                raise ValueError("calibration form 'toolrec' needs its online estimates "
                                 "(toolrec=ToolRecState(mu, scale, tool_quantile)); got None")
            w_u, w_s, weight = _toolrec(clicked, is_tool_query, self.user_ctr, w_position,
                                        toolrec, cfg)
            return Weights(self.user_ctr, w_u, w_s, w_position, weight)
        key = (True, executed, is_tool_query, theta) if clicked else (False, False, False, theta)
        known = self.known.get(key)
        if known is not None:
            return known
        w_position = position_weight(clicked, theta, cfg)
        w_activity = self.activity.get(clicked)
        if w_activity is None:
            w_activity = self.activity[clicked] = activity_weight(clicked, *self.counts, cfg)
        w_tool = tool_weight(clicked, is_tool_query, executed, cfg)
        known = self.known[key] = Weights(
            self.user_ctr, w_activity, w_tool, w_position,
            clip(w_activity * w_tool * w_position, cfg.w_min, cfg.w_max))
        return known


# --------------------------------------------------------------------------- online estimates


class CtrSketch:
    """A histogram of per-user CTRs (JSON-able: `bins` maps str(bin) → users in it).

    Pure helper over the dict kept in the partition state; see the module docstring."""

    def __init__(self, bins: dict[str, int], n_bins: int) -> None:
        self.bins = bins
        self.n_bins = n_bins

    def bin_of(self, ctr: float) -> int:
        return min(int(clip(ctr, 0.0, 1.0) * self.n_bins), self.n_bins - 1)

    def move(self, old: int | None, ctr: float) -> int:
        """Move one user from bin `old` (None: not in the sketch yet) to `ctr`'s bin."""
        new = self.bin_of(ctr)
        if old is not None and old != new and self.bins.get(str(old), 0) > 0:
            self.bins[str(old)] -= 1
            if self.bins[str(old)] == 0:
                del self.bins[str(old)]
        if old is None or old != new:
            self.bins[str(new)] = self.bins.get(str(new), 0) + 1
        return new

    @property
    def users(self) -> int:
        return sum(self.bins.values())

    def quantile(self, q: float) -> float:
        """The q-quantile of the users' CTRs, interpolated linearly within a bin."""
        total = self.users
        if total == 0:
            raise ValueError("quantile of an empty CTR sketch")
        target, seen, width = q * total, 0.0, 1.0 / self.n_bins
        for index in sorted(int(b) for b in self.bins):
            count = self.bins[str(index)]
            if seen + count >= target:
                return (index + (target - seen) / count) * width
            seen += count
        return 1.0


def toolrec_user_scale(sketch: CtrSketch, global_ctr: float,
                       cfg: CalibrationConfig) -> tuple[float, float]:
    """(μ, s) of the user-level weight from the partition's sketch (warm-up: p̄-based)."""
    if sketch.users < cfg.toolrec_min_users:
        mu, iqr = global_ctr, global_ctr / 2
    else:
        mu = sketch.quantile(cfg.toolrec_quantile)
        iqr = mu - sketch.quantile(1.0 - cfg.toolrec_quantile)
    scale = cfg.toolrec_scale if cfg.toolrec_scale is not None else iqr
    return mu, max(scale, cfg.toolrec_scale_min)


def usage_quantile(counts: dict[str, float], tool_id: str | None) -> float:
    """Mid-rank quantile of `tool_id`'s usage among the used tools (counts at one time)."""
    if tool_id is None or counts.get(tool_id, 0.0) <= 0:
        return 0.0
    mine = counts[tool_id]
    below = sum(1 for c in counts.values() if c < mine)
    ties = sum(1 for c in counts.values() if c == mine)
    return (below + 0.5 * ties) / len(counts)
