"""POST /v1/recommend: suggestions for one assistant turn, logged as an impression.

(No `from __future__ import annotations` here: FastAPI must see the request model, which
is built per configuration, as a real class in the signature.)
"""

import asyncio
import logging
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body
from starlette.concurrency import run_in_threadpool

from contracts.privacy import PiiPolicy, redact
from serving.dependencies import ServicesDep
from serving.engine import Job, Overloaded, Served
from serving.events import build_impression, new_request_id, to_record
from serving.guard import BODY_ERRORS
from serving.schemas import (
    ErrorBody,
    RecommendRequest,
    RecommendResponse,
    SuggestionOut,
    Timing,
)
from serving.services import Services
from serving.spool import SpoolError

__all__ = ["build_router"]

log = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    **BODY_ERRORS,
    422: {"model": ErrorBody, "description": "A field is missing, too long, of the wrong "
          "type or out of range; `fields` names each."},
    503: {"model": ErrorBody, "description": "Overloaded or still loading; see Retry-After."},
}


def build_router(request_model: type[RecommendRequest]) -> APIRouter:
    """The recommend router for a request model with this configuration's limits."""
    router = APIRouter(tags=["recommend"])

    @router.post("/v1/recommend", response_model=RecommendResponse, responses=ERRORS,
                 summary="Follow-up suggestions for one assistant turn")
    async def recommend(
        body: Annotated[request_model, Body()],  # type: ignore[valid-type]
        services: ServicesDep,
    ) -> RecommendResponse:
        """Retrieval → prompt → generator → parser on the serving model. Personal data in
        the free text (emails, phone, card and id numbers, street addresses: the
        `[privacy.pii]` policy) is redacted before the model sees it; the answer is logged
        durably as an impression with every identifier pseudonymized (sent to Kafka in the
        background)."""
        started = time.perf_counter()
        # off the event loop: the detectors cost milliseconds on text with digits
        request = await run_in_threadpool(_redacted, body, services.settings.privacy.pii)
        job = Job(query=request.query, response=request.response,
                  recent=tuple(request.recent_queries), context=request.context,
                  n=int(request.n or services.n_default), arm=services.engine.draw_arm())
        served = await _answer(services, job)
        request_id = new_request_id(uuid.uuid4().hex, services.user_key)
        spool_ms = await _log_impression(services, request, served, request_id)
        timing = Timing(total_ms=round((time.perf_counter() - started) * 1000, 2),
                        spool_ms=spool_ms, **served.timings)
        return RecommendResponse(
            request_id=request_id, model_version=served.model_version,
            suggestions=[SuggestionOut(**s) for s in served.suggestions], timing=timing,
        )

    return router


def _redacted(request: RecommendRequest, policy: PiiPolicy) -> RecommendRequest:
    """The request with its free text redacted (the same object when nothing was found)."""
    query, response = redact(request.query, policy), redact(request.response, policy)
    recent = [redact(q, policy) for q in request.recent_queries]
    if (query, response, recent) == (request.query, request.response, request.recent_queries):
        return request
    return request.model_copy(update={"query": query, "response": response,
                                      "recent_queries": recent})


async def _answer(services: Services, job: Job) -> Served:
    """Wait for the worker, at most request_timeout_s (a job not started by then is
    dropped; a running one finishes but its answer is not shown, so it is not logged)."""
    timeout = services.config.request_timeout_s
    try:
        return await asyncio.wait_for(asyncio.wrap_future(services.engine.submit(job)),
                                      timeout=timeout)
    except TimeoutError:
        services.metrics.rejected.labels("timeout").inc()
        raise Overloaded(f"no answer within request_timeout_s={timeout}",
                         retry_after_s=services.engine.retry_after(), reason="timeout") from None


async def _log_impression(services: Services, request: RecommendRequest, served: Served,
                          request_id: str) -> float:
    """Spool the impression (durable before the answer); 0 ms when nothing was shown."""
    if not served.suggestions:
        services.metrics.empty.inc()
        return 0.0
    impression = build_impression(
        key=services.user_key,
        request_id=request_id,
        raw_user_id=request.user_id,
        raw_session_id=request.session_id,
        query=request.query,
        context=request.context.model_dump(exclude_none=True),
        served=served,
    )
    record = to_record(impression, services.settings.kafka.topics.impressions)
    started = time.perf_counter()
    try:
        await run_in_threadpool(services.publisher.publish, [record])
    except SpoolError as exc:  # the user still gets the answer; the loss is counted
        services.metrics.spool_errors.inc()
        log.error("impression %s of request %s NOT logged: %s", impression.event_id,
                  request_id, exc)
    spooled = time.perf_counter() - started
    services.metrics.stage.labels("spool").observe(spooled)
    return round(spooled * 1000, 2)
