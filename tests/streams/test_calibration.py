"""Calibration formulas of DESIGN.md §4 against hand-computed values."""

from __future__ import annotations

import math

import pytest

from streams.calibration import Decayed, activity_weight, calibrate, smoothed_user_ctr
from streams.config import CalibrationConfig

CFG = CalibrationConfig()


def test_fresh_user_is_neutral() -> None:
    # I = C = 0: p_u = (0 + 20·0.1) / 20 = 0.1 = p̄, so ρ = 1 and both labels weigh 1.
    assert activity_weight(True, 0, 0, 0.1, CFG) == pytest.approx(1.0)
    assert activity_weight(False, 0, 0, 0.1, CFG) == pytest.approx(1.0)


def test_heavy_clicker_click_counts_less_and_skip_counts_more() -> None:
    # I = 80, C = 40, p̄ = 0.1: p_u = (40 + 2) / 100 = 0.42, ρ = 4.2.
    rho = 4.2
    assert smoothed_user_ctr(80, 40, 0.1, 20) == pytest.approx(0.42)
    assert activity_weight(True, 80, 40, 0.1, CFG) == pytest.approx(rho**-0.5)  # 0.488
    assert activity_weight(False, 80, 40, 0.1, CFG) == pytest.approx(rho**0.5)  # 2.049


def test_rare_clicker_click_counts_more_and_skip_less() -> None:
    # I = 200, C = 0, p̄ = 0.1: p_u = 2 / 220, ρ = 0.0909 → ρ^-0.5 = 3.317, ρ^0.5 = 0.3015.
    rho = (2 / 220) / 0.1
    assert activity_weight(True, 200, 0, 0.1, CFG) == pytest.approx(rho**-0.5)
    assert activity_weight(False, 200, 0, 0.1, CFG) == pytest.approx(rho**0.5)


def test_activity_weight_is_clipped() -> None:
    # I = 10_000, C = 0: ρ ≈ 0.002 → ρ^-0.5 ≈ 22, clipped to a_max = 4.
    assert activity_weight(True, 10_000, 0, 0.1, CFG) == 4.0
    assert activity_weight(False, 10_000, 0, 0.1, CFG) == 0.25


def test_tool_click_that_executed() -> None:
    w = calibrate(
        clicked=True,
        executed=True,
        is_tool_query=True,
        theta=1.0,
        user_impressions=0,
        user_clicks=0,
        global_ctr=0.1,
        cfg=CFG,
    )
    assert (w.w_activity, w.w_tool, w.w_position) == (pytest.approx(1.0), 3.0, 1.0)
    assert w.weight == pytest.approx(3.0)


def test_tool_weight_only_for_clicked_tool_queries() -> None:
    skip = calibrate(
        clicked=False,
        executed=False,
        is_tool_query=True,
        theta=1.0,
        user_impressions=0,
        user_clicks=0,
        global_ctr=0.1,
        cfg=CFG,
    )
    chat = calibrate(
        clicked=True,
        executed=False,
        is_tool_query=False,
        theta=1.0,
        user_impressions=0,
        user_clicks=0,
        global_ctr=0.1,
        cfg=CFG,
    )
    assert skip.w_tool == 1.0 and chat.w_tool == 1.0


def test_position_term_switch() -> None:
    on = CalibrationConfig(position_enabled=True)
    click = calibrate(
        clicked=True,
        executed=False,
        is_tool_query=False,
        theta=0.5,
        user_impressions=0,
        user_clicks=0,
        global_ctr=0.1,
        cfg=on,
    )
    skip = calibrate(
        clicked=False,
        executed=False,
        is_tool_query=False,
        theta=0.5,
        user_impressions=0,
        user_clicks=0,
        global_ctr=0.1,
        cfg=on,
    )
    off = calibrate(
        clicked=True,
        executed=False,
        is_tool_query=False,
        theta=0.5,
        user_impressions=0,
        user_clicks=0,
        global_ctr=0.1,
        cfg=CFG,
    )
    assert (click.w_position, skip.w_position, off.w_position) == (2.0, 0.5, 1.0)


def test_final_weight_clip() -> None:
    cfg = CalibrationConfig(w_max=5.0)
    w = calibrate(
        clicked=True,
        executed=True,
        is_tool_query=True,
        theta=1.0,
        user_impressions=10_000,
        user_clicks=0,
        global_ctr=0.1,
        cfg=cfg,
    )
    assert w.w_activity * w.w_tool == pytest.approx(12.0) and w.weight == 5.0


def test_decay_halves_after_one_half_life() -> None:
    day = 86_400_000
    count = Decayed().add(8.0, ts=0, half_life_ms=14 * day)
    assert count.at(14 * day, 14 * day) == pytest.approx(4.0)
    assert count.add(1.0, 14 * day, 14 * day).value == pytest.approx(5.0)
    # an amount from the past is decayed rather than inflating the present
    late = Decayed(4.0, 14 * day).add(8.0, 0, 14 * day)
    assert late.value == pytest.approx(8.0) and late.ts == 14 * day
    assert math.isclose(count.at(-5, 14 * day), 8.0)


def test_config_rejects_inverted_ranges() -> None:
    with pytest.raises(ValueError, match="a_min"):
        CalibrationConfig(a_min=5, a_max=1)
