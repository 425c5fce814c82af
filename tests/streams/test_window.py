"""The attribution window's pure transitions: joins, duplicates, replays, close order."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from contracts.events import _SAMPLE_ROW, Sample
from streams.calibration import MS_PER_DAY, Decayed
from streams.config import StreamsConfig
from streams.window import (
    _added,
    close,
    close_json,
    deadlines,
    due,
    expire_orphans,
    new_global_state,
    new_user_state,
    on_feedback,
    on_impression,
    release_orphans,
    sample_rows,
)
from tests.streams.events import feedback, impression

CFG = StreamsConfig(attribution_window_s=600, allowed_lateness_s=60)
DEADLINE = 1_000_000 + 660_000


def opened(*request_ids: str):  # type: ignore[no-untyped-def]
    user = new_user_state(partition=0)
    for offset, rid in enumerate(request_ids):
        assert on_impression(user, impression(rid), offset, 0, CFG) == "accepted"
    return user


def test_click_joins_its_impression_and_duplicates_count_once() -> None:
    user = opened("r1")
    assert on_feedback(user, feedback("r1", 1), 0, "", CFG) == "counted"
    assert on_feedback(user, feedback("r1", 1, event_id="again"), 1, "", CFG) == "duplicate"
    assert user["pending"]["r1"]["clicks"] == [1]


def test_replayed_offsets_are_skipped() -> None:
    user = opened("r1")
    assert on_impression(user, impression("r1"), 0, 0, CFG) == "replayed"
    on_feedback(user, feedback("r1", 1), 5, "", CFG)
    assert on_feedback(user, feedback("r1", 2), 5, "", CFG) == "replayed"
    assert user["pending"]["r1"]["clicks"] == [1]


def test_bad_joins_are_named() -> None:
    user = opened("r1")
    assert on_feedback(user, feedback("nope", 1), 0, "", CFG) == "held"
    assert on_feedback(user, feedback("r1", 9), 1, "", CFG) == "position_not_shown"
    assert on_impression(user, impression("r1"), 7, 0, CFG) == "duplicate_impression"
    assert on_impression(user, impression("old", ts=10), 8, DEADLINE, CFG) == "late_impression"
    close(user, new_global_state(), impression("r1"), CFG)
    assert on_feedback(user, feedback("r1", 1), 2, "", CFG) == "expired_impression"


def test_execute_implies_click_and_marks_success_only() -> None:
    user = opened("r1")
    assert (
        on_feedback(user, feedback("r1", 3, type="execute", success=False), 0, "", CFG) == "counted"
    )
    assert (
        on_feedback(user, feedback("r1", 1, type="execute", success=True), 1, "", CFG) == "counted"
    )
    assert sorted(user["pending"]["r1"]["clicks"]) == [1, 3]
    assert user["pending"]["r1"]["executed"] == [1]


def test_due_lists_closed_windows_in_deadline_order() -> None:
    user = opened("b", "a")
    assert due(user, DEADLINE - 1) == []
    assert due(user, DEADLINE) == [(DEADLINE, "a"), (DEADLINE, "b")]


def test_close_uses_state_before_outcome_then_counts_it() -> None:
    user, glob = opened("r1", "r2"), new_global_state()
    on_feedback(user, feedback("r1", 1, type="execute", success=True), 0, "", CFG)
    first = close(user, glob, impression("r1"), CFG)
    # fresh user, p̄ = prior: every activity weight is 1; tool click that executed: 2·1.5
    assert [s.sample_id for s in first] == ["r1:1", "r1:2", "r1:3"]
    assert [s.clicked for s in first] == [True, False, False]
    assert [s.weight for s in first] == pytest.approx([3.0, 1.0, 1.0])
    assert first[0].user_impressions == 0 and first[0].global_ctr == pytest.approx(0.1)
    assert (
        first[1].prompt == "PROMPT|- turn on wifi\n"
        and first[1].completion.strip() == "- what is the weather"
    )
    # r1's outcome (3 shown, 1 click) is now counted, r2 sees it
    second = close(user, glob, impression("r2"), CFG)
    p_bar = (1 + 100 * 0.1) / (3 + 100)
    p_u = (1 + 20 * p_bar) / (3 + 20)
    assert second[0].user_impressions == pytest.approx(3) and second[
        0
    ].user_clicks == pytest.approx(1)
    assert second[0].global_ctr == pytest.approx(p_bar)
    assert second[0].user_ctr == pytest.approx(p_u)
    assert second[0].w_activity == pytest.approx((p_u / p_bar) ** 0.5)  # not clicked
    assert second[0].closed_ts == DEADLINE


def test_close_after_partial_crash_counts_global_once() -> None:
    user, glob = opened("r1"), new_global_state()
    on_feedback(user, feedback("r1", 1), 0, "", CFG)
    survivor = {**user, "pending": {k: dict(v) for k, v in user["pending"].items()}}
    close(user, glob, impression("r1"), CFG)
    shown = glob["shown"][0]
    # the user's write was lost, the partition's survived: closing again must not double it
    again = close(survivor, glob, impression("r1"), CFG)  # type: ignore[arg-type]
    assert glob["shown"][0] == shown and survivor["shown"][0] == pytest.approx(3)
    assert again == []  # delivered before the partition's state was written


def test_feedback_before_its_impression_is_held_then_applied_or_expired() -> None:
    user = new_user_state(partition=0)
    early = feedback("r1", 2)
    assert on_feedback(user, early, 0, early.to_json_bytes().decode(), CFG) == "held"
    lost = feedback("ghost", 1)
    assert on_feedback(user, lost, 1, lost.to_json_bytes().decode(), CFG) == "held"
    assert on_impression(user, impression("r1"), 0, 0, CFG) == "accepted"
    assert [outcome for outcome, _ in release_orphans(user, "r1")] == ["counted"]
    assert user["pending"]["r1"]["clicks"] == [2]
    assert sorted(rid for _, rid in deadlines(user)) == ["ghost", "r1"]
    assert expire_orphans(user, lost.ts) == []
    expired = expire_orphans(user, DEADLINE + 500)  # the feedback came 500 ms after
    assert [o["request_id"] for o in expired] == ["ghost"] and user["orphans"] == []


def _closed_both_ways(cfg: StreamsConfig, **overrides: Any) -> tuple[list[Sample], list[bytes]]:
    """The samples of r1, closed from equal states by `close` (a validated `Sample` per row,
    as the worker built them before) and by `close_json` (the worker's path now), after a
    history (r0 closed with a click) so that every weight term has state to read."""
    results = []
    for _ in range(2):
        user, glob = opened("r0", "r1"), new_global_state()
        on_feedback(user, feedback("r0", 2), 0, "", cfg)
        close(user, glob, impression("r0"), cfg)
        on_feedback(user, feedback("r1", 1, type="execute", success=True), 1, "", cfg)
        on_feedback(user, feedback("r1", 3), 2, "", cfg)
        results.append((user, glob))
    models = close(*results[0], impression("r1", **overrides), cfg)
    rows = close_json(*results[1], impression("r1", **overrides), cfg)
    assert results[0] == results[1]  # the same state counted after either close
    return models, rows


@pytest.mark.parametrize("form", ["ours", "toolrec"])
@pytest.mark.parametrize("explore", [False, True])
def test_close_json_is_the_samples_as_validated_models_dump_them(form: str,
                                                                 explore: bool) -> None:
    cfg = CFG.model_copy(update={"calibration": CFG.calibration.model_copy(
        update={"form": form, "position_enabled": True, "toolrec_min_users": 1})})
    models, dumped = _closed_both_ways(cfg, decoding={"explore": explore})
    assert [s.tool_id is not None for s in models] == [True, False, True]
    assert [(s.clicked, s.executed) for s in models] == [(True, True), (False, False),
                                                         (True, False)]
    for model, raw in zip(models, dumped, strict=True):
        assert raw == model.to_json_bytes()
        parsed = Sample.model_validate_json(raw)  # the fast path's output is a valid Sample
        assert parsed.explored is explore
        for name, value in model.model_dump().items():  # field by field, types included
            assert getattr(parsed, name) == value and type(getattr(parsed, name)) is type(value)


def test_sample_rows_take_the_fast_path() -> None:
    user, glob = opened("r1"), new_global_state()
    on_feedback(user, feedback("r1", 1), 0, "", CFG)
    pending = user["pending"]["r1"]
    rows = list(sample_rows(user, glob, impression("r1"), pending, CFG))
    assert len(rows) == 3 and all(_SAMPLE_ROW.fit(row) for row in rows)


def test_a_request_id_too_long_for_a_sample_id_raises_before_anything_is_counted() -> None:
    long = impression("r" * 199, event_id="e1")  # valid; its sample id "r…r:1" is 201 long
    for closer in (close, close_json):
        user, glob = new_user_state(partition=0), new_global_state()
        assert on_impression(user, long, 0, 0, CFG) == "accepted"
        before = copy.deepcopy((user, glob))
        with pytest.raises(PydanticValidationError, match="sample_id") as raised:
            closer(user, glob, long, CFG)
        assert "at most 200 characters" in str(raised.value)
        assert (user["shown"], glob) == (before[0]["shown"], before[1])


def test_added_pairs_decay_the_count_or_a_late_amount() -> None:
    half = 14 * MS_PER_DAY
    assert _added([2.5, 1_000], 1, 1_000 + half, half) == pytest.approx([2.5 / 2 + 1, 1_000 + half])
    assert _added([2.5, 1_000 + half], 1, 1_000, half) == pytest.approx([2.5 + 1 / 2, 1_000 + half])
    assert _added([2.5, 3_000], 1, 3_000, half) == [3.5, 3_000]
    later = _added([2.5, 1_000], 1, 1_000 + half, half)
    assert Decayed(2.5, 1_000).add(1, 1_000 + half, half) == Decayed(later[0], int(later[1]))
