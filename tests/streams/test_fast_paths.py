"""The stream worker's shortcuts (issue 12) give exactly what the plain computations give:
shared decay factors the same floats as `_at` / `_added`, the clean-text test only texts
the fold leaves unchanged, a window's memoized skip weights those of `calibrate`, and the
sample serializer built from Sample's schemas the bytes of `to_json`."""

from __future__ import annotations

import random

from pydantic_core import to_json

from contracts.events import _SAMPLE_SERIALIZER
from generator.prompt import _folded, _is_clean, clean_text
from streams.calibration import MS_PER_DAY, Calibrator, calibrate
from streams.config import CalibrationConfig
from streams.window import _added, _at, _Decay

HALF = 14 * MS_PER_DAY


def test_shared_decay_factors_give_the_same_floats() -> None:
    rng = random.Random(3)
    for _ in range(3_000):
        ts = rng.randrange(0, 10**13)
        decay = _Decay(ts, HALF)
        for _ in range(3):
            since = rng.choice([ts, ts - rng.randrange(1, 10**10), ts + rng.randrange(1, 10**9),
                                0, rng.randrange(0, 10**13)])
            pair = [rng.random() * 1_000, since]
            amount = rng.choice([0, 1, 3, 1.0, 2.5])
            assert decay.at(pair).hex() == _at(pair, ts, HALF).hex()
            shared, plain = decay.added(pair, amount), _added(pair, amount, ts, HALF)
            assert shared[0].hex() == plain[0].hex() and shared[1] == plain[1]


def test_text_taken_as_clean_is_what_the_fold_returns() -> None:
    rng = random.Random(1)
    parts = [" ", "  ", "\t", "\n", "<", "|", ">", "<|", "|>", "a", "é", "＜", "｜", "\x00",
             "\u2028", "ﬁ", "Z", "\x7f", "~"]
    for _ in range(20_000):
        text = "".join(rng.choice(parts) for _ in range(rng.randrange(0, 8)))
        if _is_clean(text):
            assert _folded(text) == text
        assert clean_text(text) == _folded(text)


def test_a_windows_skips_share_the_weights_calibrate_gives_each() -> None:
    cfg = CalibrationConfig()
    window = Calibrator(12.0, 2.0, 0.1, cfg)
    for is_tool_query in (True, False, True):
        for clicked, executed in ((False, False), (True, False), (True, True)):
            shared = window.weights(clicked=clicked, executed=executed,
                                    is_tool_query=is_tool_query, theta=1.0)
            assert shared == calibrate(clicked=clicked, executed=executed,
                                       is_tool_query=is_tool_query, theta=1.0,
                                       user_impressions=12.0, user_clicks=2.0,
                                       global_ctr=0.1, cfg=cfg)


def test_the_sample_serializer_writes_the_bytes_of_to_json() -> None:
    rng = random.Random(2)
    chars = ["a", "é", "\x00", "\x1f", "\x7f", "\u2028", "😀", '"', "\\", "/", "\n", " "]
    floats = [0.0, -0.0, 1e300, 5e-324, 1e-7, 0.1, 1 / 3, 1e16, 2.5e-5, float("inf"),
              float("-inf"), float("nan")]
    for _ in range(2_000):
        row = {
            "schema": "sample/1", "sample_id": "r1:2", "request_id": "r1", "event_id": "e1",
            "user_id": "p_u", "session_id": "s1", "impression_ts": rng.randrange(1, 10**14),
            "closed_ts": rng.randrange(1, 10**14), "model_version": "m0",
            "template_version": "t0",
            "prompt": "".join(rng.choice(chars) for _ in range(rng.randrange(0, 12))),
            "completion": "".join(rng.choice(chars) for _ in range(rng.randrange(1, 6))),
            "position": rng.randrange(1, 50), "n_shown": 3, "clicked": rng.random() < 0.5,
            "executed": False, "explored": True, "tool_id": rng.choice([None, "x", "é😀"]),
            "is_tool_query": False, "user_impressions": rng.choice(floats),
            "user_clicks": rng.random(), "user_ctr": rng.choice(floats),
            "global_ctr": rng.random(), "w_activity": rng.random() * 10 ** rng.randrange(-9, 9),
            "w_tool": 1.0, "w_position": 1.0, "weight": rng.choice(floats),
        }
        assert _SAMPLE_SERIALIZER.to_json(row) == to_json(row, inf_nan_mode="null")
