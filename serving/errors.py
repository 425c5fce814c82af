"""How failures become HTTP answers: one `ErrorBody` shape for every 4xx / 5xx.

| exception | status | error code |
|---|---|---|
| `RequestValidationError` (missing, wrong type, too long, bad context) | 422 | invalid_request |
| `toolrec.errors.ValidationError` (event contract, e.g. feedback) | 422 | invalid_request |
| `BodyTooLarge` (and `serving.guard.BodyGuard`, before parsing) | 413 | body_too_large |
| not UTF-8 / nested deeper than max_json_depth (`serving.guard.BodyGuard`) | 400 | invalid_body |
| `RateLimited` (feedback over its per-client rate) | 429 + Retry-After | rate_limited |
| Starlette's `HTTPException` (404 path, 405 method, 400 body) | its status | not_found, … |
| `AdminDenied` | 401 missing key / 403 wrong key or admin disabled | unauthorized / forbidden |
| `Overloaded` | 503 + Retry-After | overloaded |
| `NotReady` | 503 + Retry-After | not_ready |
| `SpoolError` (an event could not be stored: disk full) | 503 + Retry-After | spool_unavailable |
| `RegistryError`, `NothingToRollBack`, `Conflict` | 409 | conflict |
| any other `ServingError` | 500 | serving_error |
| anything else (a bug) | 500 | internal_error (details only in the log) |
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.engine import NotReady, Overloaded
from serving.hotswap import NothingToRollBack
from serving.schemas import ErrorBody, FieldProblem
from serving.spool import SpoolError
from toolrec.errors import (
    GeneratorError,
    RegistryError,
    ServingError,
    TrainerError,
    ValidationError,
)

__all__ = ["AdminDenied", "BodyTooLarge", "Conflict", "RateLimited", "install_error_handlers"]

log = logging.getLogger(__name__)


class BodyTooLarge(ServingError):
    pass


class Conflict(ServingError):
    """The request cannot be applied in the current state (e.g. nothing to roll back)."""


class RateLimited(ServingError):
    """A client sent more than its configured rate; it may retry after `retry_after_s`."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               413: "body_too_large", 415: "unsupported_media_type"}


class AdminDenied(ServingError):
    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def _answer(status: int, error: str, message: str, fields: list[FieldProblem] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=error, message=message, fields=fields or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "<body>"


def _problems(exc: RequestValidationError) -> list[FieldProblem]:
    problems = []
    for err in exc.errors():
        message = str(err.get("msg", "invalid"))
        if "input" in err and err.get("type") != "missing":
            shown = repr(err["input"])
            message += f" (got {shown[:80] + '…' if len(shown) > 80 else shown})"
        problems.append(FieldProblem(field=_field_path(tuple(err.get("loc", ()))),
                                     message=message, type=str(err.get("type", "invalid"))))
    return problems


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = _problems(exc)
    summary = "; ".join(f"{p.field}: {p.message}" for p in problems[:5])
    return _answer(422, "invalid_request", f"the request is invalid: {summary}", problems)


async def _contract(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    problem = FieldProblem(field=exc.field, message=str(exc), type=exc.reason)
    return _answer(422, "invalid_request", f"the request is invalid: {exc}", [problem])


async def _too_large(request: Request, exc: Exception) -> JSONResponse:
    return _answer(413, "body_too_large", str(exc))


async def _denied(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AdminDenied)
    code = "unauthorized" if exc.status == 401 else "forbidden"
    headers = {"WWW-Authenticate": "APIKey"} if exc.status == 401 else None
    return _answer(exc.status, code, str(exc), headers=headers)


async def _overloaded(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Overloaded)
    return _answer(503, "overloaded", f"{exc}; retry after {exc.retry_after_s} s",
                   headers={"Retry-After": str(exc.retry_after_s)})


async def _not_ready(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotReady)
    return _answer(503, "not_ready", str(exc), headers={"Retry-After": str(exc.retry_after_s)})


async def _spool(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return _answer(503, "spool_unavailable", str(exc), headers={"Retry-After": "5"})


async def _rate_limited(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    return _answer(429, "rate_limited", str(exc),
                   headers={"Retry-After": str(exc.retry_after_s)})


async def _http(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown path, wrong method, unparsable body) in our shape."""
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /docs or /openapi.json"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return _answer(exc.status_code, code, message, headers=dict(exc.headers or {}))


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s raised", request.method, request.url.path, exc_info=exc)
    return _answer(500, "internal_error", "internal error; the server log has the details")


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return _answer(409, "conflict", str(exc))


async def _serving(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return _answer(500, "serving_error", str(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to its status and `ErrorBody` (most specific first)."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ValidationError, _contract)
    app.add_exception_handler(BodyTooLarge, _too_large)
    app.add_exception_handler(RateLimited, _rate_limited)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(AdminDenied, _denied)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(NotReady, _not_ready)
    app.add_exception_handler(SpoolError, _spool)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(NothingToRollBack, _conflict)
    app.add_exception_handler(RegistryError, _conflict)
    app.add_exception_handler(ServingError, _serving)
    app.add_exception_handler(TrainerError, _serving)
    app.add_exception_handler(GeneratorError, _serving)
    app.add_exception_handler(Exception, _internal)
