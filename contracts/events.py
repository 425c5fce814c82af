"""Versioned event contracts of DESIGN.md §3: impressions, feedback and samples.

`parse_event` turns raw Kafka bytes into a typed event or raises `ValidationError` whose
`field` names the offending field and whose `reason` is the machine-readable DLQ code.
`new_impression` / `new_feedback` build a validated event with a fresh event id and the
current time: serving, the telemetry producer and the simulator build events through them,
so every producer writes the same shape. `sample_json` dumps a sample built as a plain
row (the stream worker's hot path) after checking it against `Sample`'s own fields, so
`Sample` stays the one definition of the sample contract. `pseudonymize` is the keyed
hash that replaces a raw identifier before any event leaves the process that received it;
its output carries a MAC (`is_pseudonym`), so a value that claims to be a pseudonym is
verified, and hashing is idempotent (`pseudonymize_ids` may be applied by every stage an
event passes).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import operator
import secrets
import types
import typing
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import SchemaSerializer, core_schema

from contracts.privacy import PiiPolicy, redact
from toolrec.durable import create_once_text, now_ms
from toolrec.errors import ConfigError, ValidationError

__all__ = [
    "FEEDBACK_SCHEMA",
    "IMPRESSION_SCHEMA",
    "PSEUDONYM_PREFIX",
    "SAMPLE_SCHEMA",
    "Feedback",
    "FeedbackType",
    "CONTEXT_ID_FIELDS",
    "HasUserIdKey",
    "ID_FIELDS",
    "Id",
    "Impression",
    "Sample",
    "Suggestion",
    "Text",
    "TimestampMs",
    "new_feedback",
    "new_impression",
    "is_local_endpoint",
    "is_pseudonym",
    "json_names",
    "load_user_id_key",
    "parse_event",
    "protect_event",
    "protect_untrusted",
    "require_settings_key",
    "settings_key",
    "pseudonymize",
    "pseudonymize_ids",
    "require_shared_key",
    "sample_json",
    "sample_json_of",
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


_BY_POSITION = operator.attrgetter("position")  # a sort key without a Python call per item


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
        return sorted(suggestions, key=_BY_POSITION)


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


def json_names(model: type[BaseModel]) -> tuple[str, ...]:
    """The model's fields by their JSON names (alias or name), in field order: the keys of
    its rows (`sample_json`)."""
    return tuple(field.alias or name for name, field in model.model_fields.items())


class _RowChecks:
    """A model's fields as checks on a plain row (keys = the JSON names, in field order):
    the exact Python type of each value and the field's length and range constraints, all
    read from the model, which stays the one definition. Fields it cannot express (other
    annotations, constraints or validators) are refused when it is built. With `only`, just
    the values of those fields are checked: the caller vouches for the row's keys and the
    other fields (`sample_json_of`)."""

    def __init__(self, model: type[BaseModel], only: Collection[str] | None = None) -> None:
        decorators = model.__pydantic_decorators__
        if decorators.field_validators or decorators.model_validators:
            raise TypeError(f"{model.__name__} has validators a row check cannot express")
        fields = model.model_fields
        self.keys = json_names(model)
        unknown = sorted(set(only or ()) - set(self.keys))
        if unknown:
            raise TypeError(f"{model.__name__} has no fields {unknown} to check")
        # Below, an index is a position among the checked values (all, or `only`'s).
        self.types: list[type] = []  # the type of each value (None is checked apart)
        self.optional: list[int] = []  # indexes of the fields that may be None
        self.literals: list[tuple[int, tuple[Any, ...]]] = []
        self.lengths: list[tuple[int, int, int]] = []  # index, min, max length
        self.ranges: list[tuple[int, float, float]] = []  # index, greater than, less than
        checked = [(position, name, field) for position, (name, field) in
                   enumerate(fields.items()) if only is None or self.keys[position] in only]
        for index, (_, name, field) in enumerate(checked):
            self._add(index, f"{model.__name__}.{name}", field.annotation, field.metadata)
        # the checked values of a row (None: all of them, after its keys are checked)
        self.pick = None if only is None else _picker([self.keys[p] for p, *_ in checked])

    def _add(self, index: int, where: str, annotation: Any, metadata: Sequence[Any]) -> None:
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            args = typing.get_args(annotation)
            if len(args) != 2 or type(None) not in args:
                raise TypeError(f"{where}: only `X | None` unions are supported, got {args}")
            self.optional.append(index)
            annotation = next(a for a in args if a is not type(None))
        if typing.get_origin(annotation) is Annotated:
            annotation, *inner = typing.get_args(annotation)
            metadata = [*metadata, *inner]
        if typing.get_origin(annotation) is Literal:
            values = typing.get_args(annotation)
            self.literals.append((index, values))
            annotation = type(values[0])
        if annotation not in (str, int, float, bool):
            raise TypeError(f"{where}: unsupported annotation {annotation!r}")
        self.types.append(annotation)
        min_len, max_len, gt, lt = _bounds(where, metadata)
        if (min_len, max_len) != (0, None):
            self.lengths.append((index, min_len, 2**63 if max_len is None else max_len))
        if (gt, lt) != (-math.inf, math.inf):
            self.ranges.append((index, gt, lt))

    def fit(self, row: Mapping[str, Any]) -> bool:
        """True when `row` is exactly what the model would validate and dump unchanged."""
        if self.pick is None:
            if tuple(row) != self.keys:
                return False
            values = tuple(row.values())
        else:  # the checked fields by name: the caller vouches for the keys (`only`)
            try:
                values = self.pick(row)
            except KeyError:
                return False
        kinds = list(map(type, values))
        for index in self.optional:
            if values[index] is None:
                kinds[index] = self.types[index]
        if kinds != self.types:
            return False
        for index, allowed in self.literals:
            if values[index] not in allowed:
                return False
        for index, low, high in self.lengths:
            if values[index] is not None and not low <= len(values[index]) <= high:
                return False
        for index, gt, lt in self.ranges:
            if values[index] is not None and not gt < values[index] < lt:
                return False
        return True


def _picker(keys: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """The values of `keys` in a row, as a tuple (itemgetter returns a bare value for one
    key); KeyError when one is missing."""
    if len(keys) >= 2:
        return operator.itemgetter(*keys)
    return lambda row: tuple(row[key] for key in keys)


def _bounds(where: str, metadata: Sequence[Any]) -> tuple[int, int | None, float, float]:
    """(min length, max length, greater than, less than) of a field's constraints."""
    min_len, max_len, gt, lt = 0, None, -math.inf, math.inf
    for item in metadata:
        if isinstance(item, StringConstraints) and all(getattr(item, other) is None for other in (
                "strip_whitespace", "to_upper", "to_lower", "strict", "pattern", "ascii_only")):
            min_len = item.min_length if item.min_length is not None else min_len
            max_len = item.max_length if item.max_length is not None else max_len
        elif isinstance(item, annotated_types.Gt):
            gt = float(item.gt)  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Lt):
            lt = float(item.lt)  # type: ignore[arg-type]
        else:
            raise TypeError(f"{where}: unsupported constraint {item!r}")
    return min_len, max_len, gt, lt


def _row_serializer(model: type[BaseModel]) -> SchemaSerializer:
    """A serializer of `model`'s rows (dicts keyed by its JSON names) built from the model's
    own field schemas and config: a row of exact types dumps as the model would dump it,
    ≈ 20 % faster than `to_json`, which infers every value's type (issue 12)."""
    schema = model.__pydantic_core_schema__
    if schema["type"] != "model" or schema["schema"]["type"] != "model-fields":
        raise TypeError(f"{model.__name__}'s core schema is not a plain model of fields")
    fields = {field.get("serialization_alias") or name: core_schema.typed_dict_field(
        field["schema"]) for name, field in schema["schema"]["fields"].items()}
    return SchemaSerializer(core_schema.typed_dict_schema(fields), schema.get("config"))


_SAMPLE_ROW = _RowChecks(Sample)
_SAMPLE_SERIALIZER = _row_serializer(Sample)


def sample_json(row: Mapping[str, Any]) -> bytes:
    """The JSON of one sample given as a plain row (`Sample`'s JSON names, in its field
    order): the bytes `Sample.model_validate(row).to_json_bytes()` gives. A row of exact
    types within Sample's constraints is dumped as it is (the stream worker's ≈ 3.5 samples
    per impression, without a model each: issue 12); any other row goes through `Sample`,
    which converts it as it always did or raises its ValidationError."""
    return _dumped(row, _SAMPLE_ROW)


def sample_json_of(computed: Collection[str]) -> Callable[[Mapping[str, Any]], bytes]:
    """`sample_json` for a row builder that makes its rows' keys (Sample's, in order) and
    every field but `computed` exact by construction — constants, bools and ints it makes
    itself, values of a validated event under the annotation Sample gives the field. Only
    the `computed` fields are checked (each check is Python work on the stream worker's
    every sample: issue 12); a row that fails them still goes through `Sample`."""
    return functools.partial(_dumped, checks=_RowChecks(Sample, only=computed))


def _dumped(row: Mapping[str, Any], checks: _RowChecks) -> bytes:
    if checks.fit(row):
        return _SAMPLE_SERIALIZER.to_json(row)
    return Sample.model_validate(row).to_json_bytes()


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
        try:  # the model's validator itself: `model_validate_json` without its wrapper
            return expected.__pydantic_validator__.validate_json(raw)  # type: ignore[no-any-return]
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
    per-machine random key created once in `<state_dir>/secrets/user_id_key` (mode 0600).
    A per-machine key is for one local process only: `require_shared_key` refuses it for
    several replicas or a non-local deployment (two keys split one user in two)."""
    if telemetry.user_id_key is not None:
        key = telemetry.user_id_key.get_secret_value().encode()
        if len(key) < 16:
            raise ConfigError("streams.telemetry.user_id_key must be at least 16 bytes long")
        return key
    # The worker, the sink and the server may start at once: create_once_text lets one win.
    key_file = state_dir / "secrets" / "user_id_key"
    return create_once_text(key_file, lambda: secrets.token_hex(32)).strip().encode()


_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_local_endpoint(endpoint: str) -> bool:
    """True when every part of `endpoint` is on this machine: loopback hosts
    (`127.0.0.1:9092,localhost:9093`, `[::1]:80`) or a `file://` URL. A URL with another
    scheme (`s3://bucket`) or any other host (`0.0.0.0`, `broker:9092`) is not local. (Pass a
    plain directory path as `file://PATH`.)"""
    for part in (p.strip() for p in endpoint.split(",") if p.strip()):
        if "://" in part:
            scheme, rest = part.split("://", 1)
            if scheme == "file":
                continue
            part = rest.split("/", 1)[0]
        if part.startswith("["):
            host = part[1:part.find("]")]
        else:
            host = part.rsplit(":", 1)[0] if part.count(":") == 1 else part
        if host not in _LOCAL_HOSTS:
            return False
    return True


def require_shared_key(telemetry: HasUserIdKey, *, replicas: int,
                       endpoints: Mapping[str, str]) -> None:
    """Refuse to start without a configured `streams.telemetry.user_id_key` when more than one
    replica pseudonymizes, or any endpoint (broker, lake, bind address) is not local.
    Raises ConfigError naming the reason."""
    if telemetry.user_id_key is not None:
        return
    remote = {name: value for name, value in endpoints.items() if not is_local_endpoint(value)}
    if replicas > 1 or remote:
        why = f"{replicas} replicas" if replicas > 1 else \
            ", ".join(f"{k}={v}" for k, v in sorted(remote.items())) + " is not local"
        raise ConfigError(
            f"no shared pseudonymization key is configured and {why}: every process that "
            "pseudonymizes must use the same key or one user becomes several; set "
            "streams.telemetry.user_id_key (TOOLREC_STREAMS__TELEMETRY__USER_ID_KEY, >= 16 "
            "bytes) from your secret store on every replica")


def require_settings_key(settings: Any, *, replicas: int = 1,
                         extra_endpoints: Mapping[str, str] | None = None) -> None:
    """`require_shared_key` for a process configured by `settings` (toolrec.config's
    Settings): its broker, its lake and `extra_endpoints` are the endpoints checked."""
    root = settings.lake.root
    lake = root if "://" in root else f"file://{root}"
    endpoints = {"kafka.bootstrap_servers": settings.kafka.bootstrap_servers,
                 "lake.root": lake, **(extra_endpoints or {})}
    require_shared_key(settings.streams.telemetry, replicas=replicas, endpoints=endpoints)


def settings_key(settings: Any) -> bytes:
    """The key of `pseudonymize` for a one-replica process configured by `settings`, as the
    worker, the sink and the telemetry CLI load it: refused without a configured shared key
    when the broker or the lake is not on this machine (`require_settings_key`)."""
    require_settings_key(settings)
    return load_user_id_key(settings.streams.telemetry, settings.infra.state_dir)


# p_ + 24 hex digest (96 bits: no collision among billions of ids) + 8 hex MAC of the digest
# (a forged value verifies with p = 2^-32 per try, online only: the key never leaves the
# server). 34 characters, the length pseudonyms always had.
_DIGEST_HEX = 24
_TAG_HEX = 8
_PSEUDONYM_LEN = len(PSEUDONYM_PREFIX) + _DIGEST_HEX + _TAG_HEX


def _mac(key: bytes, label: bytes, data: bytes) -> str:
    mac = _keyed(key).copy()  # the key's pads hashed once (≈ 1.6 µs a MAC instead of 2.8)
    mac.update(label + b"\x00" + data)
    return mac.hexdigest()


@functools.lru_cache(maxsize=8)  # a process uses one key (two while keys rotate)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def is_pseudonym(value: str, key: bytes) -> bool:
    """True only for a value `pseudonymize` made with this `key`: `p_` + 24 hex digest + a
    MAC of the digest. A client cannot forge one without the key, so an already
    pseudonymized value is verified, never trusted by a flag."""
    if len(value) != _PSEUDONYM_LEN or not value.startswith(PSEUDONYM_PREFIX):
        return False
    return _tag_matches(value, key)


@functools.lru_cache(maxsize=65_536)  # the stream checks 3 ids an event, mostly repeats
def _tag_matches(value: str, key: bytes) -> bool:
    digest, tag = value[len(PSEUDONYM_PREFIX):-_TAG_HEX], value[-_TAG_HEX:]
    return hmac.compare_digest(tag, _mac(key, b"tag", digest.encode())[:_TAG_HEX])


def pseudonymize(raw_id: str, key: bytes) -> str:
    """Stable keyed hash of an identifier (user, session, device, client request id): same
    id, same key → same pseudonym. Idempotent: a verified pseudonym of this key is returned
    unchanged, anything else (a raw id, a forged `p_…`) is hashed."""
    if not raw_id:
        raise ValidationError("user_id", "missing_field", "the raw id is empty")
    if is_pseudonym(raw_id, key):
        return raw_id
    digest = hmac.new(key, raw_id.encode(), hashlib.sha256).hexdigest()[:_DIGEST_HEX]
    return PSEUDONYM_PREFIX + digest + _mac(key, b"tag", digest.encode())[:_TAG_HEX]


# Fields of an event payload that can lead back to a person (DESIGN.md §3).
ID_FIELDS = ("user_id", "session_id", "request_id")
CONTEXT_ID_FIELDS = ("device_id", "install_id", "advertising_id")


def _scoped(name: str, value: str, payload: Mapping[str, Any], key: bytes) -> str:
    """A client-supplied request id is hashed together with its user, so two users who pick
    the same request id get different pseudonyms: a request's identity is (user, request
    id) everywhere downstream, and one user cannot reach another's request. A verified
    pseudonym (the ids serving assigns) is returned as it is, for `pseudonymize` to keep.
    `payload["user_id"]` is already pseudonymized here (`ID_FIELDS` order)."""
    user = payload.get("user_id")
    if name != "request_id" or not isinstance(user, str) or is_pseudonym(value, key):
        return value
    return f"{user}\x00{value}"


def pseudonymize_ids(payload: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of an impression / feedback payload with every identifier pseudonymized
    (`ID_FIELDS`, and device ids in `context`); non-string or empty values are left for
    validation to refuse. Idempotent, so every stage may apply it."""
    out = dict(payload)
    for name in ID_FIELDS:
        value = out.get(name)
        if isinstance(value, str) and value:
            out[name] = pseudonymize(_scoped(name, value, out, key), key)
    context = out.get("context")
    if isinstance(context, Mapping) and any(k in context for k in CONTEXT_ID_FIELDS):
        out["context"] = {k: pseudonymize(v, key) if k in CONTEXT_ID_FIELDS
                          and isinstance(v, str) and v else v for k, v in context.items()}
    return out


def protect_event(event: Impression | Feedback, key: bytes,
                  policy: PiiPolicy | None = None) -> Impression | Feedback:
    """The event as it may leave a process: every identifier pseudonymized (a verified
    pseudonym stays, anything else is hashed: never trusted by a flag) and, for an
    impression, the free text (query, prompt, suggestion texts) redacted by `policy` (default:
    the default `PiiPolicy`). Returns `event` itself when nothing changes."""
    payload = event.model_dump(by_alias=True)
    protected = pseudonymize_ids(payload, key)
    if isinstance(event, Impression):
        policy = policy or PiiPolicy()
        protected["query"] = redact(protected["query"], policy)
        protected["prompt"] = redact(protected["prompt"], policy)
        protected["suggestions"] = [{**s, "text": redact(s["text"], policy)}
                                    for s in protected["suggestions"]]
    if protected == payload:
        return event
    return type(event).model_validate(protected)


def protect_untrusted(event: Impression | Feedback, key: bytes,
                      policy: PiiPolicy | None = None) -> Impression | Feedback:
    """`protect_event` for events from producers that may have skipped it (a producer
    writing straight to Kafka), as the stream worker and the lake sink apply it. Events
    whose ids are all verified pseudonyms came through a protecting entry point (only
    holders of the key can mint one), so the costly redaction is skipped for them."""
    # verified ids are cached; spelled out, not all() over a generator (once per event)
    if is_pseudonym(event.user_id, key) and is_pseudonym(event.request_id, key) and (
            not isinstance(event, Impression) or is_pseudonym(event.session_id, key)):
        return event
    return protect_event(event, key, policy)


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
        {"schema": schema, "event_id": event_id or uuid.uuid4().hex,
         "ts": now_ms() if ts is None else ts, **fields}
    )
    if not isinstance(event, model):  # cannot happen: the tag names the model
        raise ValidationError("schema", "wrong_topic", f"expected a {schema} event")
    return event
