"""POST /v1/admin/reload, /v1/admin/rollback and /v1/admin/forget, behind the X-API-Key
dependency."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serving.dependencies import ServicesDep, require_admin
from serving.guard import BODY_ERRORS
from serving.hotswap import SwapOutcome
from serving.privacy import forget as forget_user
from serving.schemas import (
    ErrorBody,
    ForgetRequest,
    ForgetResult,
    ReloadRequest,
    RollbackRequest,
    SwapResult,
)
from toolrec.errors import ServingError

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])

RESPONSES: dict[int | str, dict[str, Any]] = {
    **BODY_ERRORS,
    401: {"model": ErrorBody, "description": "No X-API-Key header."},
    403: {"model": ErrorBody, "description": "Wrong key, or no admin key configured."},
    409: {"model": ErrorBody, "description": "Nothing to roll back to."},
    422: {"model": ErrorBody, "description": "The body is malformed."},
    500: {"model": SwapResult, "description": "The load failed; the old model still serves."},
    504: {"model": ErrorBody, "description": "The load did not finish within load_timeout_s."},
}


def _answer(outcome: SwapOutcome) -> JSONResponse:
    fields = {k: v for k, v in asdict(outcome).items() if k in SwapResult.model_fields}
    body = SwapResult(**fields)
    return JSONResponse(body.model_dump(), status_code=500 if outcome.action == "failed" else 200)


async def _bounded(services: ServicesDep, func: object, *args: object) -> SwapOutcome:
    try:
        return await asyncio.wait_for(run_in_threadpool(func, *args),  # type: ignore[arg-type]
                                      timeout=services.config.load_timeout_s)
    except TimeoutError as exc:
        raise ServingError(f"the load did not finish within {services.config.load_timeout_s} s "
                           "(serving.load_timeout_s); it continues in the background") from exc


@router.post("/reload", response_model=SwapResult, responses=RESPONSES,
             summary="Load the registry champion now")
async def reload(
    services: ServicesDep, body: Annotated[ReloadRequest | None, Body()] = None
) -> JSONResponse:
    """Re-read the champion (registry mode) or the configured model (static mode); load,
    warm up and swap it if it differs (or always with force). Waits for the outcome."""
    force = body.force if body is not None else False
    outcome = await _bounded(services, lambda: services.manager.reconcile(
        force=force, reason="admin reload"))
    return _answer(outcome)


@router.post("/rollback", response_model=SwapResult, responses=RESPONSES,
             summary="Roll the champion back and serve it")
async def rollback(
    services: ServicesDep, body: Annotated[RollbackRequest | None, Body()] = None
) -> JSONResponse:
    """Registry mode: demote the champion in the registry (announced on toolrec.models)
    and serve the reinstated version (reloaded: a swap keeps only the current model). Static
    mode: reload the previous model."""
    to = body.to if body is not None else None
    outcome = await _bounded(services, services.manager.rollback, to)
    return _answer(outcome)


@router.post("/forget", response_model=ForgetResult, responses=RESPONSES,
             summary="Erase a user from the lake, the spool and the stream state")
async def forget(services: ServicesDep, body: ForgetRequest) -> ForgetResult:
    """Pseudonymize `user_id` with the shared key (a verified pseudonym is taken as is),
    then delete the user's rows from every Delta table (then vacuum, with an audit row of
    pseudonym and time), erase their records in this server's spool and write tombstones to
    the stream state's changelogs. `not_erased` says what this cannot reach."""
    result = await run_in_threadpool(forget_user, services.settings, body.user_id,
                                     services.user_key, spool=services.publisher.spool)
    return ForgetResult(**result)
