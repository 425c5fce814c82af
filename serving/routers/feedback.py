"""POST /v1/feedback: click / execute / dismiss for clients that do not produce to Kafka
themselves. Built and validated exactly like the telemetry library's events."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from serving.dependencies import ServicesDep, limit_body
from serving.events import build_feedback, to_record
from serving.schemas import ErrorBody, FeedbackAccepted, FeedbackRequest

__all__ = ["router"]

router = APIRouter(tags=["feedback"], dependencies=[Depends(limit_body)])


@router.post(
    "/v1/feedback", status_code=202, response_model=FeedbackAccepted,
    responses={413: {"model": ErrorBody}, 422: {"model": ErrorBody},
               503: {"model": ErrorBody}},
    summary="Report a click, execution or dismissal of a suggestion",
)
async def feedback(body: FeedbackRequest, services: ServicesDep) -> FeedbackAccepted:
    """Spooled durably before the answer and sent to toolrec.feedback in the background."""
    event = build_feedback(
        raw_user_id=body.user_id, key=services.user_key, request_id=body.request_id,
        type=body.type, position=body.position, success=body.success, ts=body.ts,
    )
    record = to_record(event, services.settings.kafka.topics.feedback)
    await run_in_threadpool(services.publisher.publish, [record])
    return FeedbackAccepted(event_id=event.event_id)
