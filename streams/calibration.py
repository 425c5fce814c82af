"""Dual-level calibration of click samples (DESIGN.md §4) as pure functions.

The project's own definition: per user u, decayed counts of shown suggestions I_u and
clicks C_u; a global (per-partition) decayed click rate p̄; smoothed user rate
p_u = (C_u + κ·p̄) / (I_u + κ); activity ratio ρ_u = p_u / p̄.

- activity: clicked → clip(ρ_u^-γ, a_min, a_max); not clicked → clip(ρ_u^+γ, a_min, a_max)
  (a click from a heavy clicker says less; a skip from a rare clicker says little).
- tool: clicked and is_tool_query → λ_tool, × λ_exec if the tool then executed; else 1.
- position (switchable): clicked at k → 1/θ_k; not clicked → θ_k (θ_1 = 1).
- weight = clip(w_activity · w_tool · w_position, w_min, w_max).

The state passed in is the state *before* this impression's outcome is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streams.config import CalibrationConfig

MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class Decayed:
    """An exponentially decayed count: `value` as of event time `ts` (ms)."""

    value: float = 0.0
    ts: int = 0

    def at(self, ts: int, half_life_ms: float) -> float:
        """The count as seen at `ts` (no growth for a `ts` in the past)."""
        if ts <= self.ts:
            return self.value
        return self.value * math.exp(-math.log(2) * (ts - self.ts) / half_life_ms)

    def add(self, amount: float, ts: int, half_life_ms: float) -> Decayed:
        """Add `amount` at event time `ts`; out-of-order amounts are decayed instead."""
        if ts >= self.ts:
            return Decayed(self.at(ts, half_life_ms) + amount, ts)
        late = amount * math.exp(-math.log(2) * (self.ts - ts) / half_life_ms)
        return Decayed(self.value + late, self.ts)


@dataclass(frozen=True)
class Weights:
    user_ctr: float  # p_u, smoothed
    w_activity: float
    w_tool: float
    w_position: float
    weight: float


def clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


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
) -> Weights:
    """All weight components of one sample, from the state before its outcome."""
    w_activity = activity_weight(clicked, user_impressions, user_clicks, global_ctr, cfg)
    w_tool = tool_weight(clicked, is_tool_query, executed, cfg)
    w_position = position_weight(clicked, theta, cfg)
    return Weights(
        user_ctr=smoothed_user_ctr(user_impressions, user_clicks, global_ctr, cfg.kappa),
        w_activity=w_activity,
        w_tool=w_tool,
        w_position=w_position,
        weight=clip(w_activity * w_tool * w_position, cfg.w_min, cfg.w_max),
    )
