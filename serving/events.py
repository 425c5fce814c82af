"""Impression and feedback events of DESIGN.md §3, built and validated with the contracts
and factories of `contracts.events`, so an event that leaves serving is exactly what the
streaming stage expects.

Privacy by construction: every identifier (user, session, request, device ids in the
context) goes through `contracts.events.pseudonymize_ids` here, the one place serving builds
events, and free text (query, recent queries, response) is redacted by the request handler
before it reaches the model, so the logged prompt is the redacted one the model saw.
"""

from __future__ import annotations

from typing import Any

from contracts.events import (
    Feedback,
    Impression,
    new_feedback,
    new_impression,
    pseudonymize,
    pseudonymize_ids,
)
from serving.engine import Served
from serving.spool import OutRecord

__all__ = ["build_feedback", "build_impression", "new_request_id", "to_record"]


def new_request_id(fresh: str, key: bytes) -> str:
    """A request id handed to the client: a pseudonym of a fresh random value, so feedback
    quoting it passes `pseudonymize` unchanged and joins its impression."""
    return pseudonymize(fresh, key)


def build_impression(
    *,
    key: bytes,
    request_id: str,
    raw_user_id: str,
    raw_session_id: str,
    query: str,
    context: dict[str, Any],
    served: Served,
    ts: int | None = None,
) -> Impression:
    """The impression of one answered request, every identifier pseudonymized with `key`."""
    ids = pseudonymize_ids({"user_id": raw_user_id, "session_id": raw_session_id,
                            "request_id": request_id, "context": context}, key)
    return new_impression(
        request_id=ids["request_id"], user_id=ids["user_id"], session_id=ids["session_id"],
        model_version=served.model_version, template_version=served.template_version,
        prompt=served.prompt, query=query, context=ids["context"],
        suggestions=served.suggestions, decoding=served.decoding, ts=ts,
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
    """A feedback event like `TelemetryProducer.feedback` builds it, with the user and the
    client-supplied request id pseudonymized (a request id serving issued is already a
    verified pseudonym and stays as it is). Raises ValidationError."""
    ids = pseudonymize_ids({"user_id": raw_user_id, "request_id": request_id}, key)
    return new_feedback(request_id=ids["request_id"], user_id=ids["user_id"],
                        type=type, position=position, success=success, ts=ts)


def to_record(event: Impression | Feedback, topic: str) -> OutRecord:
    """The spool record of an event: keyed by the pseudonymous user (co-partitioning)."""
    return OutRecord(id=event.event_id, topic=topic, key=event.user_id,
                     value=event.to_json_bytes().decode())
