"""Impression and feedback events of DESIGN.md §3, built and validated with the contracts
and factories of `contracts.events` (the pseudonymization too), so an event that
leaves serving is exactly what the streaming stage expects."""

from __future__ import annotations

from typing import Any

from contracts.events import Feedback, Impression, new_feedback, new_impression, pseudonymize
from serving.engine import Served
from serving.spool import OutRecord

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
    return new_impression(
        request_id=request_id, user_id=user_id, session_id=session_id,
        model_version=served.model_version, template_version=served.template_version,
        prompt=served.prompt, query=query, context=context, suggestions=served.suggestions,
        decoding=served.decoding, ts=ts,
    )


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
    user, fresh event id, validated by `contracts.events`. Raises ValidationError."""
    return new_feedback(request_id=request_id, user_id=pseudonymize(raw_user_id, key),
                        type=type, position=position, success=success, ts=ts)


def to_record(event: Impression | Feedback, topic: str) -> OutRecord:
    """The spool record of an event: keyed by the pseudonymous user (co-partitioning)."""
    return OutRecord(id=event.event_id, topic=topic, key=event.user_id,
                     value=event.to_json_bytes().decode())
