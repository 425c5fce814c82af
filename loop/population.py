"""Simulated users: who clicks how much, and how position hides lower suggestions.

Activity distribution (this project's design; constants in `ClickModelConfig`):

| cohort  | share (default) | activity a     | behaviour |
|---------|-----------------|----------------|-----------|
| rare    | 30 %            | U[0, 0.30)     | clicks only very useful suggestions |
| regular | 50 %            | U[0.30, 0.75)  | clicks useful suggestions, sometimes others |
| heavy   | 20 %            | U[0.75, 1.00]  | clicks often, almost regardless of utility |

A user examining a suggestion of true utility u clicks it with probability

    attract_a(u) = floor(a) + (ceiling − floor(a)) · σ((u − τ(a)) / s(a))

(floor log-linear in a, τ and s linear in a; see `ClickModelConfig`). Position bias is a
cascade: the user reads the list top-down, examines position k with probability
examine(k) = k^−η, and stops at the first click; so P(click at k) =
examine(k)·attract(u_k)·Π_{j<k}(1 − examine(j)·attract(u_j)). The reference user of the
ground-truth CTR is a regular user with activity `reference_activity`.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from loop.config import ClickModelConfig

Cohort = Literal["rare", "regular", "heavy"]
COHORTS: tuple[Cohort, ...] = ("rare", "regular", "heavy")


@dataclass(frozen=True)
class ClickParams:
    """The attract curve of one activity level."""

    floor: float
    ceiling: float
    tau: float
    slope: float

    def attract(self, utility: float) -> float:
        z = (utility - self.tau) / self.slope
        return self.floor + (self.ceiling - self.floor) / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class User:
    """One simulated user. `raw_id` is all the system ever learns about them."""

    index: int
    raw_id: str
    activity: float
    cohort: Cohort
    params: ClickParams


def click_params(activity: float, cfg: ClickModelConfig) -> ClickParams:
    a = min(max(activity, 0.0), 1.0)
    return ClickParams(
        floor=cfg.floor_rare * (cfg.floor_heavy / cfg.floor_rare) ** a,
        ceiling=cfg.ceiling,
        tau=cfg.tau_rare + (cfg.tau_heavy - cfg.tau_rare) * a,
        slope=cfg.slope_rare + (cfg.slope_heavy - cfg.slope_rare) * a,
    )


def cohort_of(activity: float, cfg: ClickModelConfig) -> Cohort:
    if activity < cfg.rare_max:
        return "rare"
    return "heavy" if activity >= cfg.heavy_min else "regular"


def raw_user_id(seed: int, index: int) -> str:
    """A neutral id: nothing in it tells the user's activity or cohort."""
    digest = hashlib.sha256(f"toolrec-sim:{seed}:{index}".encode()).hexdigest()[:12]
    return f"sim-{digest}"


def draw_activity(rng: random.Random, cfg: ClickModelConfig) -> float:
    roll = rng.random()
    if roll < cfg.rare_share:
        return rng.uniform(0.0, cfg.rare_max)
    if roll < cfg.rare_share + cfg.heavy_share:
        return rng.uniform(cfg.heavy_min, 1.0)
    return rng.uniform(cfg.rare_max, cfg.heavy_min)


def population(seed: int, size: int, cfg: ClickModelConfig) -> list[User]:
    """`size` users, deterministic for `seed`."""
    rng = random.Random(f"population:{seed}")
    users = []
    for index in range(size):
        activity = draw_activity(rng, cfg)
        users.append(User(index, raw_user_id(seed, index), activity,
                          cohort_of(activity, cfg), click_params(activity, cfg)))
    return users


def reference_user(cfg: ClickModelConfig) -> ClickParams:
    return click_params(cfg.reference_activity, cfg)


def examine(position: int, eta: float) -> float:
    return math.pow(position, -eta)


def cascade(utilities: Sequence[float], params: ClickParams, eta: float) -> list[float]:
    """P(the click lands at position k), k = 1..len; their sum is P(any click)."""
    probs, survive = [], 1.0
    for k, utility in enumerate(utilities, start=1):
        p = examine(k, eta) * params.attract(utility)
        probs.append(survive * p)
        survive *= 1.0 - p
    return probs


def draw_click(
    utilities: Sequence[float], params: ClickParams, eta: float, rng: random.Random
) -> int | None:
    """One user's cascade: the clicked position (1-based) or None."""
    for k, utility in enumerate(utilities, start=1):
        if rng.random() < examine(k, eta) * params.attract(utility):
            return k
    return None
