"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.dependencies import ServicesDep

__all__ = ["router"]

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(services: ServicesDep) -> Response:
    """Request counts and latency, stage times, queue and spool depth, model version,
    swaps and failed loads."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
