"""Checks shared by routes, as FastAPI dependencies (tests swap them with
`app.dependency_overrides`)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from serving.errors import AdminDenied, BodyTooLarge
from serving.services import Services

__all__ = ["API_KEY_HEADER", "ServicesDep", "get_services", "limit_body", "require_admin"]

API_KEY_HEADER = "X-API-Key"
_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                        description="The admin key of serving.admin_api_key.")


def get_services(request: Request) -> Services:
    """The running instance's services (set by the app factory)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def limit_body(request: Request, services: ServicesDep) -> None:
    """Refuse bodies over `max_body_bytes` with 413 before they are validated. (FastAPI has
    read the body by then: this bounds validation work and gives a clear answer; memory
    limits for hostile clients belong to the proxy in front.)"""
    limit = services.config.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body has {declared} bytes; the limit is {limit} "
                           "(serving.max_body_bytes)")
    if declared is None:  # chunked: read it (cached for the body parser) and measure
        size = len(await request.body())
        if size > limit:
            raise BodyTooLarge(f"the body has {size} bytes; the limit is {limit} "
                               "(serving.max_body_bytes)")


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
