"""The worker checks only the sample fields a window computes (`streams.window.COMPUTED_FIELDS`,
issue 12); every other field must be exact by construction. These tests pin why: each
is a constant or a bool / int the window makes, or a field of the validated impression or
suggestion under Sample's own annotation, so the impression's validation already checked it."""

from __future__ import annotations

import random

import pytest
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from contracts.events import Impression, Sample, Suggestion, sample_json, sample_json_of
from streams.config import StreamsConfig
from streams.window import (
    COMPUTED_FIELDS,
    close_json,
    new_global_state,
    new_user_state,
    on_feedback,
    on_impression,
    sample_rows,
)
from tests.streams.events import feedback, impression

CFG = StreamsConfig(attribution_window_s=600, allowed_lateness_s=60)
# Sample field -> (model, field) it is copied from in `sample_rows`
COPIED: dict[str, tuple[type[BaseModel], str]] = {
    "request_id": (Impression, "request_id"), "event_id": (Impression, "event_id"),
    "user_id": (Impression, "user_id"), "session_id": (Impression, "session_id"),
    "impression_ts": (Impression, "ts"), "model_version": (Impression, "model_version"),
    "template_version": (Impression, "template_version"),
    "position": (Suggestion, "position"), "tool_id": (Suggestion, "tool_id"),
}
MADE = {"schema": str, "n_shown": int, "clicked": bool, "executed": bool, "explored": bool,
        "is_tool_query": bool}


def _sample_fields() -> dict[str, str]:
    """JSON name -> attribute name of Sample's fields."""
    return {field.alias or name: name for name, field in Sample.model_fields.items()}


def test_every_sample_field_is_computed_copied_or_made() -> None:
    assert sorted(_sample_fields()) == sorted([*COMPUTED_FIELDS, *COPIED, *MADE])


@pytest.mark.parametrize("name", sorted(COPIED))
def test_a_copied_field_has_the_annotation_of_its_source(name: str) -> None:
    field = Sample.model_fields[_sample_fields()[name]]
    model, source_name = COPIED[name]
    source = model.model_fields[source_name]
    assert field.annotation == source.annotation
    # Sample's constraints are among the source's: what the source allowed, Sample allows
    assert all(constraint in source.metadata for constraint in field.metadata)


def test_rows_of_random_windows_fit_sample_in_full() -> None:
    rng = random.Random(5)
    glob = new_global_state()
    for i in range(40):
        user, rid = new_user_state(partition=0), f"r{i}"
        event = impression(rid, ts=1_000_000 + i * 60_000)
        assert on_impression(user, event, i, 0, CFG) == "accepted"
        for position in rng.sample([1, 2, 3], rng.randrange(4)):
            on_feedback(user, feedback(rid, position, ts=event.ts + 1), i, "", CFG)
        rows = list(sample_rows(user, glob, event, user["pending"][rid], CFG))
        assert [sample_json(row) for row in rows] == \
            [Sample.model_validate(row).to_json_bytes() for row in rows]
        assert close_json(user, glob, event, CFG) == [sample_json(row) for row in rows]


def test_a_computed_field_out_of_bounds_is_refused_as_sample_refuses_it() -> None:
    user = new_user_state(partition=0)
    event = impression("r1")
    assert on_impression(user, event, 0, 0, CFG) == "accepted"
    row = next(sample_rows(user, new_global_state(), event, user["pending"]["r1"], CFG))
    dump = sample_json_of(COMPUTED_FIELDS)
    assert dump(row) == sample_json(row)
    for bad in ({"prompt": "x" * 20_001}, {"closed_ts": 10**14}, {"weight": 1}):
        changed = row | bad
        if bad == {"weight": 1}:  # an int where Sample holds a float: converted, as Sample does
            assert dump(changed) == Sample.model_validate(changed).to_json_bytes()
            continue
        with pytest.raises(PydanticValidationError):
            dump(changed)


def test_only_names_fields_of_the_model() -> None:
    with pytest.raises(TypeError, match="no fields"):
        sample_json_of(["weight", "not_a_field"])
