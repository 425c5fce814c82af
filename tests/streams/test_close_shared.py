"""A window's close shares per-window work (`Calibrator`, position 1's rate, the closed-id
rebuild) without changing a single weight or state entry (issue 12): checked against the
per-sample formulas (`calibrate`, `theta` without the shared rate) and against the
closed-id rebuild, over a random history in both calibration forms."""

from __future__ import annotations

import random
from typing import Any

import pytest

from streams.calibration import MS_PER_DAY, Calibrator, calibrate
from streams.config import CalibrationConfig, StreamsConfig
from streams.window import (
    Pending,
    _at,
    close_as,
    close_json,
    global_ctr,
    new_global_state,
    new_user_state,
    on_feedback,
    on_impression,
    sample_rows,
    theta,
    toolrec_estimates,
)
from tests.streams.events import feedback, impression

CFG = StreamsConfig(attribution_window_s=600, allowed_lateness_s=60)
WEIGHT_FIELDS = ("user_ctr", "w_activity", "w_tool", "w_position", "weight")


def _cfg(**calibration: Any) -> StreamsConfig:
    return CFG.model_copy(update={"calibration": CFG.calibration.model_copy(update=calibration)})


def _per_sample(user: Any, glob: Any, rid: str, ts: int, pending: Pending,
                cfg: StreamsConfig) -> list[tuple[float, ...]]:
    """Each sample's weights as `calibrate` and `theta` give them one sample at a time (the
    worker's computation before the window shared its work)."""
    from streams.calibration import ToolRecState, usage_quantile

    half = cfg.calibration.half_life_days * MS_PER_DAY
    shown, clicks = _at(user["shown"], ts, half), _at(user["clicks"], ts, half)
    p_bar = global_ctr(glob, ts, cfg)
    toolrec = toolrec_estimates(glob, ts, p_bar, cfg)
    clicked = set(pending["clicks"]) | set(pending["executed"])
    out = []
    for suggestion in impression(rid, ts=ts).suggestions:
        weights = calibrate(
            clicked=suggestion.position in clicked,
            executed=suggestion.position in pending["executed"],
            is_tool_query=suggestion.tool_id is not None,
            theta=theta(glob, suggestion.position, ts, p_bar, cfg),
            user_impressions=shown, user_clicks=clicks, global_ctr=p_bar, cfg=cfg.calibration,
            toolrec=None if toolrec is None else ToolRecState(
                toolrec[0], toolrec[1], usage_quantile(toolrec[2], suggestion.tool_id)))
        out.append(tuple(getattr(weights, name) for name in WEIGHT_FIELDS))
    return out


@pytest.mark.parametrize("calibration", [
    {"form": "ours"}, {"form": "ours", "position_enabled": True},
    {"form": "toolrec", "position_enabled": True, "toolrec_min_users": 1},
    {"form": "ours", "position_enabled": True, "kappa": 0.5, "gamma": 0.8},
])
def test_shared_window_work_gives_the_per_sample_weights(calibration: dict[str, Any]) -> None:
    cfg, rng = _cfg(**calibration), random.Random(7)
    glob = new_global_state()
    users = {name: new_user_state(partition=0) for name in ("p_a", "p_b", "p_c")}
    for i in range(60):
        name, rid, ts = rng.choice(sorted(users)), f"r{i}", 1_000_000 + i * 3_600_000
        user = users[name]
        assert on_impression(user, impression(rid, user_id=name, ts=ts), i, 0, cfg) == "accepted"
        for offset, position in enumerate(rng.sample([1, 2, 3], rng.randrange(3))):
            kind = rng.choice(["click", "execute"])
            on_feedback(user, feedback(rid, position, user_id=name, ts=ts + 1, type=kind,
                                       success=True), 1_000 * i + offset, "", cfg)
        pending = user["pending"][rid]
        expected = _per_sample(user, glob, rid, ts, pending, cfg)
        rows = list(sample_rows(user, glob, impression(rid, user_id=name, ts=ts), pending, cfg))
        assert [tuple(row[name] for name in WEIGHT_FIELDS) for row in rows] == expected
        close_json(user, glob, impression(rid, user_id=name, ts=ts), cfg)


def test_a_calibrator_computes_the_activity_weight_only_for_what_the_window_has() -> None:
    cfg = CalibrationConfig(kappa=0.0)  # a user without clicks: p_u = 0, ρ = 0
    shared = Calibrator(10.0, 0.0, 0.1, cfg)
    skipped = shared.weights(clicked=False, executed=False, is_tool_query=False, theta=1.0)
    assert skipped == calibrate(clicked=False, executed=False, is_tool_query=False, theta=1.0,
                                user_impressions=10.0, user_clicks=0.0, global_ctr=0.1, cfg=cfg)
    with pytest.raises(ZeroDivisionError):  # 0 ** -γ, as one sample at a time
        shared.weights(clicked=True, executed=False, is_tool_query=False, theta=1.0)
    with pytest.raises(ZeroDivisionError):
        calibrate(clicked=True, executed=False, is_tool_query=False, theta=1.0,
                  user_impressions=10.0, user_clicks=0.0, global_ctr=0.1, cfg=cfg)


def _rebuilt(closed: dict[str, int], closed_at: int, cfg: StreamsConfig) -> list[tuple[str, int]]:
    """The closed ids as the full rebuild keeps them: within retention, the newest
    `max_closed_per_user` when there are more."""
    retention = 2 * (int(cfg.attribution_window_s * 1000) + int(cfg.allowed_lateness_s * 1000))
    kept = [(t, r) for r, t in closed.items() if t >= closed_at - retention]
    if len(kept) > cfg.max_closed_per_user:
        kept = sorted(kept)[-cfg.max_closed_per_user:]
    return [(r, t) for t, r in kept]


@pytest.mark.parametrize("case", ["all kept", "some expired", "over the cap", "unsorted"])
def test_closed_ids_are_kept_as_the_rebuild_keeps_them(case: str) -> None:
    cfg = CFG.model_copy(update={"max_closed_per_user": 4})
    deadline = 1_000_000 + 660_000
    closed = {
        "all kept": {"a": deadline - 5, "b": deadline - 1},
        "some expired": {"old": deadline - 10**9, "a": deadline - 5, "b": deadline - 1},
        "over the cap": {f"c{i}": deadline - 100 + i for i in range(6)},
        "unsorted": {"b": deadline - 1, "a": deadline - 5, "z": deadline},
    }[case]
    user = new_user_state(partition=0)
    user["closed"] = dict(closed)
    assert on_impression(user, impression("r1"), 0, 0, cfg) == "accepted"
    expected = _rebuilt({**closed, "r1": deadline}, deadline, cfg)
    close_as(user, new_global_state(), impression("r1"), cfg, lambda row: row)
    assert list(user["closed"].items()) == expected
