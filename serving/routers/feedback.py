"""POST /v1/feedback: click / execute / dismiss for clients that do not produce to Kafka
themselves. Built and validated exactly like the telemetry library's events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from serving.config import ServingConfig
from serving.dependencies import ServicesDep, limit_feedback_rate
from serving.events import build_feedback, to_record
from serving.guard import BODY_ERRORS
from serving.schemas import ErrorBody, FeedbackAccepted, FeedbackRequest
from toolrec.durable import now_ms
from toolrec.errors import ValidationError

__all__ = ["router"]

router = APIRouter(tags=["feedback"], dependencies=[Depends(limit_feedback_rate)])

RESPONSES: dict[int | str, dict[str, Any]] = {
    **BODY_ERRORS,
    422: {"model": ErrorBody, "description": "A field is missing, malformed or out of range "
          "(`ts` outside the server's window: type ts_out_of_range); `fields` names each."},
    429: {"model": ErrorBody, "description": "More than feedback_rate_per_s from this client; "
          "see Retry-After.", "headers": {"Retry-After": {
              "description": "Seconds to wait.", "schema": {"type": "integer"}}}},
    503: {"model": ErrorBody, "description": "The event could not be stored; see Retry-After."},
}


def check_ts(ts: int | None, config: ServingConfig, *, now: int | None = None) -> None:
    """Refuse an event time beyond the server clock + feedback_max_skew_s or older than
    feedback_max_age_s (ValidationError 'ts_out_of_range' naming the window)."""
    if ts is None:
        return
    now = now_ms() if now is None else now
    low = now - int(config.feedback_max_age_s * 1000)
    high = now + int(config.feedback_max_skew_s * 1000)
    if not low <= ts <= high:
        raise ValidationError(
            "ts", "ts_out_of_range",
            f"ts {ts} is outside [{low}, {high}] (server time {now} ms minus "
            f"serving.feedback_max_age_s={config.feedback_max_age_s:g} s, plus "
            f"serving.feedback_max_skew_s={config.feedback_max_skew_s:g} s); omit ts to use "
            "the server's time",
        )


@router.post(
    "/v1/feedback", status_code=202, response_model=FeedbackAccepted, responses=RESPONSES,
    summary="Report a click, execution or dismissal of a suggestion",
)
async def feedback(body: FeedbackRequest, services: ServicesDep) -> FeedbackAccepted:
    """Spooled durably before the answer and sent to toolrec.feedback in the background.
    The user and request ids are pseudonymized; `ts`, if sent, must be plausible."""
    check_ts(body.ts, services.config)
    event = build_feedback(
        raw_user_id=body.user_id, key=services.user_key, request_id=body.request_id,
        type=body.type, position=body.position, success=body.success, ts=body.ts,
    )
    record = to_record(event, services.settings.kafka.topics.feedback)
    await run_in_threadpool(services.publisher.publish, [record])
    return FeedbackAccepted(event_id=event.event_id)
