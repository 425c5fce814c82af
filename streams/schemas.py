"""Versioned event contracts of DESIGN.md §3: impressions, feedback and samples.

`parse_event` turns raw Kafka bytes into a typed event or raises `ValidationError` whose
`field` names the offending field and whose `reason` is the machine-readable DLQ code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic import ValidationError as PydanticValidationError

from toolrec.errors import ValidationError

IMPRESSION_SCHEMA = "impression/1"
FEEDBACK_SCHEMA = "feedback/1"
SAMPLE_SCHEMA = "sample/1"

Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=20_000)]
TimestampMs = Annotated[int, Field(gt=0, lt=10**14)]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class Suggestion(_Event):
    position: int = Field(ge=1, le=50)
    text: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    tool_id: Id | None = None


class Impression(_Event):
    """One recommend call: what was shown to whom, by which model, decoded how."""

    schema_: Literal["impression/1"] = Field("impression/1", alias="schema")
    event_id: Id
    request_id: Id
    user_id: Id
    session_id: Id
    ts: TimestampMs
    model_version: Id
    template_version: Id
    prompt: Text
    query: Text
    context: dict[str, Any] = Field(default_factory=dict)
    suggestions: list[Suggestion] = Field(min_length=1, max_length=50)
    decoding: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("suggestions")
    @classmethod
    def _unique_positions(cls, suggestions: list[Suggestion]) -> list[Suggestion]:
        positions = [s.position for s in suggestions]
        if len(set(positions)) != len(positions):
            raise ValueError(f"positions must be unique, got {positions}")
        return sorted(suggestions, key=lambda s: s.position)


class Feedback(_Event):
    """A user's reaction to one shown suggestion."""

    schema_: Literal["feedback/1"] = Field("feedback/1", alias="schema")
    event_id: Id
    request_id: Id
    user_id: Id
    ts: TimestampMs
    type: Literal["click", "execute", "dismiss"]
    position: int = Field(ge=1, le=50)
    success: bool | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Sample(_Event):
    """One shown suggestion with its label and auditable calibration weights."""

    schema_: Literal["sample/1"] = Field("sample/1", alias="schema")
    sample_id: Id  # request_id:position
    request_id: Id
    event_id: Id  # the impression's event id
    user_id: Id
    session_id: Id
    impression_ts: TimestampMs
    closed_ts: TimestampMs  # event time at which the attribution window closed (deadline)
    model_version: Id
    template_version: Id
    prompt: Text  # rendered prompt + suggestions shown before this one
    completion: Text
    position: int
    n_shown: int
    clicked: bool
    executed: bool
    explored: bool
    tool_id: Id | None
    is_tool_query: bool
    user_impressions: float
    user_clicks: float
    user_ctr: float
    global_ctr: float
    w_activity: float
    w_tool: float
    w_position: float
    weight: float

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


_SCHEMAS: dict[str, type[_Event]] = {
    IMPRESSION_SCHEMA: Impression,
    FEEDBACK_SCHEMA: Feedback,
    SAMPLE_SCHEMA: Sample,
}


def _reason_for(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", "invalid"))
    if kind == "missing":
        return "missing_field"
    if kind == "extra_forbidden":
        return "unknown_field"
    if kind.endswith("_too_long") or kind == "too_long":
        return "field_too_long"
    return "invalid_field"


def parse_event(
    raw: bytes, *, max_bytes: int = 65536, expected: type[_Event] | None = None
) -> Impression | Feedback | Sample:
    """Decode and validate one event. Raises ValidationError(field, reason, message).

    With `expected` (the model a topic carries), a valid event is parsed in one pass by
    pydantic-core; anything else takes the slow path, which names what is wrong.
    """
    if len(raw) > max_bytes:
        raise ValidationError("<event>", "oversized", f"{len(raw)} bytes > limit {max_bytes}")
    if expected is not None:
        try:
            return expected.model_validate_json(raw)  # type: ignore[return-value]
        except PydanticValidationError:
            pass  # diagnose below
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError("<event>", "malformed_json", f"not UTF-8 JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ValidationError("<event>", "malformed_json", "the event must be a JSON object")
    return validate_payload(payload)


def validate_payload(payload: dict[str, Any]) -> Impression | Feedback | Sample:
    """Validate an already-decoded event object against the schema it names."""
    schema = payload.get("schema")
    model = _SCHEMAS.get(schema) if isinstance(schema, str) else None
    if model is None:
        raise ValidationError(
            "schema", "unknown_schema", f"{schema!r} is not one of {sorted(_SCHEMAS)}"
        )
    try:
        return model.model_validate(payload)  # type: ignore[return-value]
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<event>"
        raise ValidationError(field, _reason_for(first), f"{first['msg']}") from exc
