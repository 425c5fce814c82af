"""The attribution window's pure transitions: joins, duplicates, replays, close order."""

from __future__ import annotations

import pytest

from streams.config import StreamsConfig
from streams.window import (
    close,
    deadlines,
    due,
    expire_orphans,
    new_global_state,
    new_user_state,
    on_feedback,
    on_impression,
    release_orphans,
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
