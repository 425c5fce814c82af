"""Versioned event contracts of DESIGN.md §3: impressions, feedback and samples.

`parse_event` turns raw Kafka bytes into a typed event or raises `ValidationError` whose
`field` names the offending field and whose `reason` is the machine-readable DLQ code.
`new_impression` / `new_feedback` build a validated event with a fresh event id and the
current time: serving, the telemetry producer and the simulator build events through them,
so every producer writes the same shape. `pseudonymize` is the keyed hash that replaces a
raw user id before any event leaves the process that received it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator
from pydantic import ValidationError as PydanticValidationError

from toolrec.durable import now_ms
from toolrec.errors import ConfigError, ValidationError

__all__ = [
    "FEEDBACK_SCHEMA",
    "IMPRESSION_SCHEMA",
    "PSEUDONYM_PREFIX",
    "SAMPLE_SCHEMA",
    "Feedback",
    "FeedbackType",
    "HasUserIdKey",
    "Id",
    "Impression",
    "Sample",
    "Suggestion",
    "Text",
    "TimestampMs",
    "new_feedback",
    "new_impression",
    "load_user_id_key",
    "parse_event",
    "pseudonymize",
    "validate_payload",
]

# The schema tags; each model's `schema` field is a Literal of its tag (mypy needs the
# literal spelled out there), and `_SCHEMAS` maps tags to models.
IMPRESSION_SCHEMA = "impression/1"
FEEDBACK_SCHEMA = "feedback/1"
SAMPLE_SCHEMA = "sample/1"

PSEUDONYM_PREFIX = "p_"
FeedbackType = Literal["click", "execute", "dismiss"]

Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=20_000)]
TimestampMs = Annotated[int, Field(gt=0, lt=10**14)]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


E = TypeVar("E", bound=_Event)


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
    type: FeedbackType
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


class HasUserIdKey(Protocol):
    """The settings that may carry the pseudonymization key (`streams.config.TelemetryConfig`)."""

    @property
    def user_id_key(self) -> SecretStr | None: ...


def load_user_id_key(telemetry: HasUserIdKey, state_dir: Path) -> bytes:
    """The configured HMAC key of `pseudonymize` (`streams.telemetry.user_id_key`), or a
    per-machine random key created once in `<state_dir>/secrets/user_id_key` (mode 0600)."""
    if telemetry.user_id_key is not None:
        key = telemetry.user_id_key.get_secret_value().encode()
        if len(key) < 16:
            raise ConfigError("streams.telemetry.user_id_key must be at least 16 bytes long")
        return key
    path = state_dir / "secrets" / "user_id_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def pseudonymize(raw_user_id: str, key: bytes) -> str:
    """Stable keyed hash of a raw user id: same user, same key → same pseudonym."""
    if not raw_user_id:
        raise ValidationError("user_id", "missing_field", "the raw user id is empty")
    digest = hmac.new(key, raw_user_id.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]


def new_impression(
    *,
    request_id: str,
    user_id: str,
    session_id: str,
    model_version: str,
    template_version: str,
    prompt: str,
    query: str,
    suggestions: Sequence[Mapping[str, Any]],
    context: Mapping[str, Any] | None = None,
    decoding: Mapping[str, Any] | None = None,
    ts: int | None = None,
    event_id: str | None = None,
) -> Impression:
    """A validated impression (`user_id` already pseudonymized); a fresh event id and the
    current time unless given. Raises ValidationError naming the bad field."""
    return _new(Impression, event_id, ts, {
        "request_id": request_id, "user_id": user_id, "session_id": session_id,
        "model_version": model_version, "template_version": template_version,
        "prompt": prompt, "query": query, "context": dict(context or {}),
        "suggestions": [dict(s) for s in suggestions], "decoding": dict(decoding or {}),
    })


def new_feedback(
    *,
    request_id: str,
    user_id: str,
    type: FeedbackType | str,
    position: int,
    success: bool | None = None,
    ts: int | None = None,
    event_id: str | None = None,
) -> Feedback:
    """A validated feedback event (`user_id` already pseudonymized); a fresh event id and the
    current time unless given. Raises ValidationError naming the bad field."""
    return _new(Feedback, event_id, ts, {
        "request_id": request_id, "user_id": user_id, "type": type, "position": position,
        "success": success,
    })


def _new(model: type[E], event_id: str | None, ts: int | None, fields: dict[str, Any]) -> E:
    """Validate `fields` as a `model` event stamped with its schema tag, an id and a time."""
    schema = model.model_fields["schema_"].default
    event = validate_payload(
        {"schema": schema, "event_id": event_id or uuid.uuid4().hex, "ts": ts or now_ms(),
         **fields}
    )
    if not isinstance(event, model):  # cannot happen: the tag names the model
        raise ValidationError("schema", "wrong_topic", f"expected a {schema} event")
    return event
