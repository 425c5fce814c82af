"""GET /healthz (the process answers) and GET /readyz (a model and retrieval are loaded)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.dependencies import ServicesDep
from serving.schemas import Health, Readiness

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 whenever the event loop answers (generation never blocks it)."""
    return Health()


@router.get("/readyz", response_model=Readiness, summary="Readiness",
            responses={503: {"model": Readiness, "description": "Not ready yet."}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """200 when a model serves and retrieval is loaded, else 503. A broker outage does not
    make the API unready: impressions are spooled meanwhile."""
    state = Readiness(**services.readiness())
    return JSONResponse(state.model_dump(), status_code=200 if state.ready else 503)
