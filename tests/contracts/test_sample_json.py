"""`sample_json`: a plain sample row dumped as `Sample` would dump it, or refused as it would."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from contracts.events import _SAMPLE_ROW, Impression, Sample, _RowChecks, sample_json


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "schema": "sample/1", "sample_id": "r1:2", "request_id": "r1", "event_id": "e1",
        "user_id": "p_u", "session_id": "s1", "impression_ts": 1_000, "closed_ts": 3_500,
        "model_version": "m0", "template_version": "t0", "prompt": "P|- a\n",
        "completion": "- b é \"q\"\n", "position": 2, "n_shown": 3, "clicked": True,
        "executed": False, "explored": True, "tool_id": None, "is_tool_query": False,
        "user_impressions": 3.0, "user_clicks": 0.9999999999999999, "user_ctr": 1e-05,
        "global_ctr": 0.1, "w_activity": 0.25, "w_tool": 1.0, "w_position": 1.0,
        "weight": 0.30000000000000004,
    }
    return row | changes


@pytest.mark.parametrize("changes", [{}, {"tool_id": "clock.alarm.set", "is_tool_query": True},
                                     {"prompt": "x" * 20_000, "sample_id": "r" * 200},
                                     {"weight": float("inf")}])  # Sample's JSON writes null
def test_a_row_of_exact_types_is_dumped_as_its_sample(changes: dict[str, Any]) -> None:
    row = _row(**changes)
    assert _SAMPLE_ROW.fit(row)
    assert sample_json(row) == Sample.model_validate(row).to_json_bytes()


@pytest.mark.parametrize("changes", [
    {"w_tool": 1},  # an int where Sample holds a float: dumped as 1.0
    {"clicked": 1},
])
def test_a_row_sample_converts_goes_through_sample(changes: dict[str, Any]) -> None:
    row = _row(**changes)
    assert not _SAMPLE_ROW.fit(row)
    assert sample_json(row) == Sample.model_validate(row).to_json_bytes()


def test_keys_out_of_order_are_dumped_in_field_order() -> None:
    row = _row()
    reordered = dict(reversed(list(row.items())))
    assert sample_json(reordered) == sample_json(row)


@pytest.mark.parametrize("changes", [
    {"sample_id": "r" * 201}, {"sample_id": ""}, {"prompt": "x" * 20_001},
    {"closed_ts": 0}, {"impression_ts": 10**14}, {"schema": "sample/2"}, {"n_shown": None},
    {"tool_id": ""}, {"extra": 1}, {"position": "two"},
])
def test_a_row_sample_refuses_is_refused_with_its_error(changes: dict[str, Any]) -> None:
    row = _row(**changes)
    with pytest.raises(PydanticValidationError) as expected:
        Sample.model_validate(row)
    with pytest.raises(PydanticValidationError) as raised:
        sample_json(row)
    assert raised.value.errors() == expected.value.errors()


def test_a_missing_field_is_refused() -> None:
    row = _row()
    del row["weight"]
    with pytest.raises(PydanticValidationError, match="weight"):
        sample_json(row)


def test_fields_a_row_check_cannot_express_are_refused_when_it_is_built() -> None:
    class Tags(BaseModel):
        tags: list[str]

    with pytest.raises(TypeError, match="Tags.tags"):
        _RowChecks(Tags)
    with pytest.raises(TypeError, match="validators"):
        _RowChecks(Impression)
