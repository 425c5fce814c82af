"""Calibration formulas of DESIGN.md §4 against hand-computed values."""

from __future__ import annotations

import math
from typing import Any

import pytest

from streams.calibration import Decayed, activity_weight, calibrate, smoothed_user_ctr
from streams.config import CalibrationConfig

CFG = CalibrationConfig()


def _weights(*, clicked: bool, executed: bool, tool: bool, theta: float = 1.0,
             impressions: int = 0, clicks: int = 0, cfg: CalibrationConfig = CFG) -> Any:
    """`calibrate` for one sample of a user with these counts (p̄ = 0.1)."""
    return calibrate(clicked=clicked, executed=executed, is_tool_query=tool, theta=theta,
                     user_impressions=impressions, user_clicks=clicks, global_ctr=0.1, cfg=cfg)


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
    w = _weights(clicked=True, executed=True, tool=True)
    assert (w.w_activity, w.w_tool, w.w_position) == (pytest.approx(1.0), 3.0, 1.0)
    assert w.weight == pytest.approx(3.0)


def test_tool_weight_only_for_clicked_tool_queries() -> None:
    skip = _weights(clicked=False, executed=False, tool=True)
    chat = _weights(clicked=True, executed=False, tool=False)
    assert skip.w_tool == 1.0 and chat.w_tool == 1.0


def test_position_term_switch() -> None:
    on = CalibrationConfig(position_enabled=True)
    click = _weights(clicked=True, executed=False, tool=False, theta=0.5, cfg=on)
    skip = _weights(clicked=False, executed=False, tool=False, theta=0.5, cfg=on)
    off = _weights(clicked=True, executed=False, tool=False, theta=0.5)
    assert (click.w_position, skip.w_position, off.w_position) == (2.0, 0.5, 1.0)


def test_final_weight_clip() -> None:
    cfg = CalibrationConfig(w_max=5.0)
    w = _weights(clicked=True, executed=True, tool=True, impressions=10_000, cfg=cfg)
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


# --------------------------------------------------------------------------- ToolRec form (§4b)

TOOLREC = CalibrationConfig(form="toolrec")


def _toolrec(clicked: bool, is_tool: bool, *, uctr_clicks: float, p: float,
             mu: float = 0.1, scale: float = 0.05, cfg: CalibrationConfig = TOOLREC):  # type: ignore[no-untyped-def]
    from streams.calibration import ToolRecState

    # I = 80 shown, C = uctr_clicks, p̄ = 0.1, κ = 20: uctr = (C + 2) / 100
    return calibrate(clicked=clicked, executed=False, is_tool_query=is_tool, theta=1.0,
                     user_impressions=80, user_clicks=uctr_clicks, global_ctr=0.1, cfg=cfg,
                     toolrec=ToolRecState(mu, scale, p))


def test_toolrec_user_weight_hand_computed() -> None:
    # uctr = (18 + 2) / 100 = 0.2, μ = 0.1, s = 0.05: tanh(2) = 0.96403
    clicked = _toolrec(True, False, uctr_clicks=18, p=0.0)
    skipped = _toolrec(False, False, uctr_clicks=18, p=0.0)
    assert clicked.user_ctr == pytest.approx(0.2)
    assert clicked.w_activity == pytest.approx(1 - 0.25 * math.tanh(2.0))  # 0.75900
    assert skipped.w_activity == pytest.approx(1 + 0.25 * math.tanh(2.0))  # 1.24101
    # a non-tool sample: w_s = 1; clicked → max(0.759, 1) = 1; skipped → min(1.241, 1) = 1
    assert clicked.w_tool == skipped.w_tool == 1.0
    assert clicked.weight == skipped.weight == 1.0
    # a rare clicker (uctr = 2/100 = 0.02 < μ): clicks weigh more, skips less
    rare = _toolrec(True, False, uctr_clicks=0, p=0.0)
    assert rare.w_activity == pytest.approx(1 + 0.25 * math.tanh(1.6))  # 1.2305
    assert rare.weight == pytest.approx(rare.w_activity)
    assert _toolrec(False, False, uctr_clicks=0, p=0.0).weight == pytest.approx(
        1 - 0.25 * math.tanh(1.6))


def test_toolrec_tool_weight_hand_computed() -> None:
    # clicked tool query, p = 0.9: (1 + 1.25)^(0.9^3) = 2.25^0.729 = 1.8067
    hot = _toolrec(True, True, uctr_clicks=18, p=0.9)
    assert hot.w_tool == pytest.approx(2.25**0.729)
    assert hot.weight == pytest.approx(max(hot.w_activity, hot.w_tool))
    # p = 1 → 2.25, p = 0 → 1 (a never-used tool); weight = max(w_u, w_s)
    assert _toolrec(True, True, uctr_clicks=18, p=1.0).w_tool == pytest.approx(2.25)
    cold = _toolrec(True, True, uctr_clicks=0, p=0.0)
    assert cold.w_tool == 1.0 and cold.weight == pytest.approx(cold.w_activity)  # 1.23 > 1
    # a skipped tool query: w_s = 0, weight = min(w_u, 0) = 0 (left out of training)
    skipped = _toolrec(False, True, uctr_clicks=0, p=0.9)
    assert skipped.w_tool == 0.0 and skipped.weight == 0.0


def test_toolrec_switches_and_position() -> None:
    no_tool = TOOLREC.model_copy(update={"tool_enabled": False})
    assert _toolrec(False, True, uctr_clicks=18, p=0.9, cfg=no_tool).w_tool == 1.0
    no_user = TOOLREC.model_copy(update={"activity_enabled": False})
    assert _toolrec(True, True, uctr_clicks=18, p=0.0, cfg=no_user).weight == 1.0
    position = TOOLREC.model_copy(update={"position_enabled": True})
    from streams.calibration import ToolRecState

    row = calibrate(clicked=True, executed=False, is_tool_query=True, theta=0.5,
                    user_impressions=80, user_clicks=18, global_ctr=0.1, cfg=position,
                    toolrec=ToolRecState(0.1, 0.05, 1.0))
    assert row.w_position == 2.0 and row.weight == pytest.approx(2.25 * 2.0)
    with pytest.raises(ValueError, match="needs its online estimates"):
        calibrate(clicked=True, executed=False, is_tool_query=True, theta=1.0,
                  user_impressions=0, user_clicks=0, global_ctr=0.1, cfg=TOOLREC)


def test_ctr_sketch_quantiles_and_moves() -> None:
    from streams.calibration import CtrSketch, toolrec_user_scale

    bins: dict[str, int] = {}
    sketch = CtrSketch(bins, 100)
    where = [sketch.move(None, ctr) for ctr in (0.005, 0.015, 0.025, 0.035)]  # one per bin
    assert where == [0, 1, 2, 3] and sketch.users == 4
    # 4 users, one per 0.01-bin: q = 0.75 → target 3 users → the end of bin 2 = 0.03
    assert sketch.quantile(0.75) == pytest.approx(0.03)
    assert sketch.quantile(0.25) == pytest.approx(0.01)
    where[0] = sketch.move(where[0], 0.095)  # the lowest user becomes a heavy clicker
    assert sketch.users == 4 and "0" not in bins and bins["9"] == 1
    assert sketch.quantile(0.75) == pytest.approx(0.04)
    cfg = CalibrationConfig(form="toolrec", toolrec_min_users=4)
    mu, scale = toolrec_user_scale(sketch, 0.1, cfg)
    assert mu == pytest.approx(0.04) and scale == pytest.approx(0.04 - 0.02)
    # warm-up (fewer users than toolrec_min_users): μ = p̄, s = p̄ / 2; a fixed s wins
    assert toolrec_user_scale(sketch, 0.1, TOOLREC) == pytest.approx((0.1, 0.05))
    fixed = cfg.model_copy(update={"toolrec_scale": 0.03})
    assert toolrec_user_scale(sketch, 0.1, fixed)[1] == 0.03


def test_usage_quantile_mid_rank() -> None:
    from streams.calibration import usage_quantile

    counts = {"a": 1.0, "b": 2.0, "c": 2.0, "d": 5.0}
    assert usage_quantile(counts, "d") == pytest.approx(3.5 / 4)  # 3 below + ½ itself
    assert usage_quantile(counts, "b") == pytest.approx((1 + 1.0) / 4)  # 1 below + ½·2 ties
    assert usage_quantile(counts, "a") == pytest.approx(0.5 / 4)
    assert usage_quantile(counts, "never-used") == 0.0
    assert usage_quantile(counts, None) == 0.0


def test_config_names_the_form() -> None:
    with pytest.raises(ValueError, match="form"):
        CalibrationConfig(form="paper")  # type: ignore[arg-type]


def test_worker_applies_the_toolrec_form_selected_by_config(kafka, start_worker) -> None:  # type: ignore[no-untyped-def]
    """The Faust worker on a real broker, `streams.calibration.form = toolrec` set through the
    environment only: skipped tool queries weigh 0, the clicked tool query max(w_u, w_s)."""
    import time

    from kafka import KafkaProducer

    from tests.streams.conftest import read_topic, samples_by_id
    from tests.streams.events import feedback, impression

    start_worker(calibration__form="toolrec")
    now = int(time.time() * 1000)
    producer = KafkaProducer(**kafka.client_kwargs(), acks="all", linger_ms=5)
    producer.send(kafka.topics.impressions, key=b"p_alice",
                  value=impression("r1", ts=now).to_json_bytes())
    producer.send(kafka.topics.feedback, key=b"p_alice",
                  value=feedback("r1", 1, ts=now + 5).to_json_bytes())
    producer.flush()
    producer.close()
    samples = samples_by_id(read_topic(kafka, kafka.topics.samples, until=lambda m: len(m) >= 3))
    r1 = [samples[f"r1:{k}"] for k in (1, 2, 3)]
    assert [(s["clicked"], s["is_tool_query"]) for s in r1] == [
        (True, True), (False, False), (False, True)]
    # fresh partition: μ = p̄ = 0.1 (warm-up), a fresh user's uctr = p̄ → w_u = 1; the
    # clicked tool was never used before → p = 0, w_s = 1
    assert (r1[0]["w_activity"], r1[0]["w_tool"], r1[0]["weight"]) == pytest.approx((1, 1, 1))
    assert r1[1]["weight"] == pytest.approx(1.0)  # skipped, no tool: min(w_u, 1)
    assert (r1[2]["w_tool"], r1[2]["weight"]) == (0.0, 0.0)  # skipped tool query
