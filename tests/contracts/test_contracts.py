"""The contracts package: derived Arrow columns, event factories, DLQ headers, model names."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from pydantic import BaseModel

from contracts.arrow import arrow_fields
from contracts.dlq import DETAIL_LIMIT, DeadLetter
from contracts.events import (
    FEEDBACK_SCHEMA,
    IMPRESSION_SCHEMA,
    Sample,
    new_feedback,
    new_impression,
    parse_event,
    pseudonymize,
)
from contracts.models import BASE_VERSION, parse_announcement, version_name
from lakehouse.tables import SAMPLES_SCHEMA
from toolrec.errors import ConfigError, ValidationError


def test_the_samples_table_starts_with_the_derived_sample_columns() -> None:
    derived = pa.schema(arrow_fields(Sample))
    assert derived.names[0] == "schema" and "tool_id" in derived.names
    assert derived.field("tool_id").nullable and not derived.field("clicked").nullable
    assert derived.field("position").type == pa.int64()
    assert derived.field("weight").type == pa.float64()
    assert pa.schema(list(SAMPLES_SCHEMA)[: len(derived)]).equals(derived)


def test_a_field_without_an_arrow_type_is_refused_with_its_name() -> None:
    class Odd(BaseModel):
        tags: list[str]

    with pytest.raises(ConfigError, match="'tags'.*contracts.arrow"):
        arrow_fields(Odd)


def test_factories_build_events_that_round_trip_through_the_parser() -> None:
    impression = new_impression(
        request_id="r1", user_id=pseudonymize("alice", b"k" * 32), session_id="s1",
        model_version=BASE_VERSION, template_version="t", prompt="P", query="q",
        suggestions=[{"position": 2, "text": "b"}, {"position": 1, "text": "a"}],
    )
    assert impression.schema_ == IMPRESSION_SCHEMA and impression.ts > 0
    assert [s.position for s in impression.suggestions] == [1, 2]
    assert parse_event(impression.to_json_bytes()) == impression
    feedback = new_feedback(request_id="r1", user_id=impression.user_id, type="click",
                            position=1, ts=5, event_id="f1")
    assert json.loads(feedback.to_json_bytes())["schema"] == FEEDBACK_SCHEMA
    assert parse_event(feedback.to_json_bytes()) == feedback


def test_a_factory_names_the_bad_field() -> None:
    with pytest.raises(ValidationError) as caught:
        new_feedback(request_id="r1", user_id="p_x", type="like", position=1)
    assert caught.value.field == "type" and caught.value.reason == "invalid_field"


def test_dead_letter_headers_have_one_layout() -> None:
    letter = DeadLetter(reason="missing_field", field="ts", detail="x" * 900, stage="lakehouse",
                        source_topic="toolrec.samples", source_partition=3, source_offset=42,
                        truncated=True)
    headers = letter.headers()
    assert [k for k, _ in headers] == ["reason", "field", "detail", "stage", "source_topic",
                                       "source_partition", "source_offset", "truncated"]
    values = dict(headers)
    assert len(values["detail"]) == DETAIL_LIMIT and values["source_offset"] == b"42"
    assert "truncated" not in dict(DeadLetter(**{**letter.__dict__, "truncated": False}).headers())


def test_model_versions_and_announcements() -> None:
    assert version_name(7) == "v7"
    with pytest.raises(ValueError, match="start at 1"):
        version_name(0)
    body = {"schema": "model-announcement/1", "version": "v2", "adapter_path": "/a/v2",
            "action": "rollback", "ts": 9, "base_model": "/m", "previous": "v3", "new": 1}
    announcement = parse_announcement(json.dumps(body).encode())
    assert announcement is not None and announcement.action == "rollback"
    assert announcement.model_dump(by_alias=True)["schema"] == "model-announcement/1"
    assert parse_announcement(b"not json") is None
    assert parse_announcement(b'{"schema": "model-announcement/1"}') is None  # no version
