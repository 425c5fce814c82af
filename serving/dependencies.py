"""Checks shared by routes, as FastAPI dependencies (tests swap them with
`app.dependency_overrides`). Body size, UTF-8 and JSON depth are checked before routing by
`serving.guard.BodyGuard`."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from serving.errors import AdminDenied, RateLimited
from serving.guard import RateLimiter
from serving.services import Services

__all__ = ["API_KEY_HEADER", "ServicesDep", "get_limiter", "get_services", "limit_feedback_rate",
           "require_admin"]

API_KEY_HEADER = "X-API-Key"
_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                        description="The admin key of serving.admin_api_key.")


def get_services(request: Request) -> Services:
    """The running instance's services (set by the app factory)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_limiter(request: Request) -> RateLimiter:
    """The feedback rate limiter of this app (built by the app factory)."""
    limiter: RateLimiter = request.app.state.feedback_limiter
    return limiter


async def limit_feedback_rate(
    request: Request, limiter: Annotated[RateLimiter, Depends(get_limiter)]
) -> None:
    """Per client address: at most serving.feedback_rate_per_s sustained (burst
    serving.feedback_burst), else 429 with Retry-After. Behind a proxy every client has the
    proxy's address: limit there, or raise the rate."""
    client = request.client.host if request.client is not None else "unknown"
    wait = limiter.acquire(client)
    if wait > 0:
        retry = RateLimiter.retry_after(wait)
        raise RateLimited(f"more than {limiter.rate:g} feedback requests per second from "
                          f"{client} (serving.feedback_rate_per_s, burst "
                          f"serving.feedback_burst={limiter.burst}); retry after {retry} s",
                          retry_after_s=retry)


def require_admin(
    services: ServicesDep, key: Annotated[str | None, Security(_api_key)] = None
) -> None:
    """Admin endpoints: the X-API-Key header must equal serving.admin_api_key. Without a
    configured key every request is refused."""
    expected = services.config.admin_api_key
    if expected is None or not expected.get_secret_value():
        raise AdminDenied("admin endpoints are disabled: no serving.admin_api_key is "
                          "configured (set TOOLREC_SERVING__ADMIN_API_KEY)", status=403)
    if not key:
        raise AdminDenied(f"missing {API_KEY_HEADER} header", status=401)
    if not hmac.compare_digest(key.encode(), expected.get_secret_value().encode()):
        raise AdminDenied(f"wrong {API_KEY_HEADER}", status=403)
