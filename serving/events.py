"""Impression and feedback events of DESIGN.md §3, built and validated with the contracts
of `streams.schemas` and the pseudonymization of the telemetry library, so an event that
leaves serving is exactly what the streaming stage expects."""

from __future__ import annotations

import uuid
from typing import Any

from serving.engine import Served
from serving.spool import OutRecord
from streams.producer import now_ms, pseudonymize
from streams.schemas import (
    FEEDBACK_SCHEMA,
    IMPRESSION_SCHEMA,
    Feedback,
    Impression,
    validate_payload,
)
from toolrec.errors import ValidationError

__all__ = ["build_feedback", "build_impression", "to_record"]


def build_impression(
    *,
    request_id: str,
    user_id: str,
    session_id: str,
    query: str,
    context: dict[str, Any],
    served: Served,
    ts: int | None = None,
) -> Impression:
    """The impression of one answered request (`user_id` already pseudonymized)."""
    payload = {
        "schema": IMPRESSION_SCHEMA,
        "event_id": uuid.uuid4().hex,
        "request_id": request_id,
        "user_id": user_id,
        "session_id": session_id,
        "ts": ts or now_ms(),
        "model_version": served.model_version,
        "template_version": served.template_version,
        "prompt": served.prompt,
        "query": query,
        "context": context,
        "suggestions": served.suggestions,
        "decoding": served.decoding,
    }
    event = validate_payload(payload)
    assert isinstance(event, Impression)
    return event


def build_feedback(
    *,
    raw_user_id: str,
    key: bytes,
    request_id: str,
    type: str,
    position: int,
    success: bool | None = None,
    ts: int | None = None,
) -> Feedback:
    """A feedback event exactly as `TelemetryProducer.feedback` builds it: pseudonymized
    user, fresh event id, validated by `streams.schemas`. Raises ValidationError."""
    payload = {
        "schema": FEEDBACK_SCHEMA,
        "event_id": uuid.uuid4().hex,
        "request_id": request_id,
        "user_id": pseudonymize(raw_user_id, key),
        "ts": ts or now_ms(),
        "type": type,
        "position": position,
        "success": success,
    }
    event = validate_payload(payload)
    if not isinstance(event, Feedback):  # cannot happen: the schema field says feedback
        raise ValidationError("schema", "wrong_topic", "expected a feedback event")
    return event


def to_record(event: Impression | Feedback, topic: str) -> OutRecord:
    """The spool record of an event: keyed by the pseudonymous user (co-partitioning)."""
    return OutRecord(id=event.event_id, topic=topic, key=event.user_id,
                     value=event.to_json_bytes().decode())
