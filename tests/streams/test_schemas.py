"""Event validation names the offending field and gives a machine-readable reason."""

from __future__ import annotations

import json

import pytest

from contracts.events import Impression, parse_event
from tests.streams.events import feedback, impression
from toolrec.errors import ValidationError


def raw(event: object) -> bytes:
    return json.dumps(event).encode()


def test_round_trip() -> None:
    event = impression("r1")
    parsed = parse_event(event.to_json_bytes())
    assert isinstance(parsed, Impression) and parsed == event
    assert json.loads(event.to_json_bytes())["schema"] == "impression/1"


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        (b"\xff\xfe", "<event>", "malformed_json"),
        (b"[1, 2]", "<event>", "malformed_json"),
        (raw({"schema": "impression/9"}), "schema", "unknown_schema"),
        (
            raw(
                {
                    k: v
                    for k, v in json.loads(feedback("r", 1).to_json_bytes()).items()
                    if k != "request_id"
                }
            ),
            "request_id",
            "missing_field",
        ),
        (
            raw(json.loads(feedback("r", 1).to_json_bytes()) | {"type": "like"}),
            "type",
            "invalid_field",
        ),
        (
            raw(json.loads(feedback("r", 1).to_json_bytes()) | {"position": 0}),
            "position",
            "invalid_field",
        ),
        (
            raw(json.loads(feedback("r", 1).to_json_bytes()) | {"extra": 1}),
            "extra",
            "unknown_field",
        ),
        (
            raw(json.loads(impression("r").to_json_bytes()) | {"suggestions": []}),
            "suggestions",
            "invalid_field",
        ),
    ],
)
def test_invalid_events_name_field_and_reason(payload: bytes, field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_event(payload)
    assert (info.value.field, info.value.reason) == (field, reason)


def test_duplicate_positions_rejected() -> None:
    event = json.loads(impression("r").to_json_bytes())
    event["suggestions"][1]["position"] = 1
    with pytest.raises(ValidationError, match="positions must be unique"):
        parse_event(raw(event))


def test_oversized() -> None:
    with pytest.raises(ValidationError) as info:
        parse_event(b"x" * 2000, max_bytes=1024)
    assert info.value.reason == "oversized"
