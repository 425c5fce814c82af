"""The app factory: wires services, middleware, error handlers and one router per resource.

    app = create_app(settings)                 # uvicorn.run(app, ...) / TestClient(app)

Nothing else lives here: endpoints are in `serving.routers.*`, shared checks in
`serving.dependencies`, the long-lived parts in `serving.services`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from contracts.events import require_settings_key
from serving.errors import install_error_handlers
from serving.guard import BodyGuard, RateLimiter
from serving.metrics import MetricsMiddleware
from serving.routers import admin, feedback, health, metrics, recommend
from serving.schemas import recommend_request_model
from serving.services import Services

if TYPE_CHECKING:
    from toolrec.config import Settings

__all__ = ["API_VERSION", "create_app"]

API_VERSION = "1.0.0"


def create_app(settings: Settings, *, services: Services | None = None) -> FastAPI:
    """The API for `settings` (tests: a tiny model, a tmp spool, a real broker). Services
    start when the app's lifespan starts and stop when it ends. Refuses (ConfigError) a
    fleet or non-local deployment without a shared pseudonymization key."""
    _require_shared_key(settings)
    services = services or Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(services.start)
        try:
            yield
        finally:
            await run_in_threadpool(services.stop)

    app = FastAPI(
        title="toolrec recommendation API",
        version=API_VERSION,
        summary="Tool-grounded follow-up query suggestions with zero-downtime model swaps.",
        lifespan=lifespan,
    )
    app.state.services = services
    config = settings.serving
    app.state.feedback_limiter = RateLimiter(rate=config.feedback_rate_per_s,
                                             burst=config.feedback_burst,
                                             max_clients=config.rate_limit_clients)
    # Added first, so it runs inside the metrics middleware: rejected bodies are counted.
    app.add_middleware(BodyGuard, max_body_bytes=config.max_body_bytes,
                       max_admin_body_bytes=config.max_admin_body_bytes,
                       max_json_depth=config.max_json_depth)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    install_error_handlers(app)
    request_model = recommend_request_model(settings.serving, services.n_default)
    app.include_router(recommend.build_router(request_model))
    app.include_router(feedback.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(admin.router)
    return app


def _require_shared_key(settings: Settings) -> None:
    """Several replicas, or a broker, lake or bind address beyond this machine, need the one
    shared pseudonymization key (else each replica would split its users)."""
    require_settings_key(settings, replicas=settings.serving.replicas,
                         extra_endpoints={"serving.host": settings.serving.host})


def openapi_schema(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of the app for `settings` (nothing is started)."""
    return create_app(settings).openapi()
