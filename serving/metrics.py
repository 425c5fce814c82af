"""Prometheus metrics of one app instance, on its own registry (so tests can build several
apps in one process), and the ASGI middleware that counts and times every request."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0,
                   21.0, 34.0, 60.0)


@dataclass
class Metrics:
    """Every metric the API exports (names start with `toolrec_serving_`)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r, p = self.registry, "toolrec_serving_"
        self.requests = Counter(f"{p}requests_total", "HTTP requests by route and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram(f"{p}request_seconds", "HTTP request latency by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram(f"{p}stage_seconds", "Time per recommend stage (queue, "
                               "retrieval, generate, parse, spool).", ["stage"],
                               buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(f"{p}batch_size", "Requests per generation batch.",
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32), registry=r)
        self.rejected = Counter(f"{p}rejected_total", "Recommend requests refused with 503.",
                                ["reason"], registry=r)
        self.queue_depth = Gauge(f"{p}queue_depth", "Requests admitted and not finished.",
                                 registry=r)
        self.model_info = Gauge(f"{p}model_info", "1 for the model version serving now.",
                                ["version"], registry=r)
        self.swaps = Counter(f"{p}swaps_total", "Completed model swaps.", registry=r)
        self.swap_failures = Counter(f"{p}swap_failures_total",
                                     "Model loads that failed (the current model kept serving).",
                                     registry=r)
        self.load_seconds = Histogram(f"{p}model_load_seconds", "Load + warm-up of a model.",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.suggestions = Counter(f"{p}suggestions_total", "Suggestions returned by source.",
                                   ["source"], registry=r)
        self.explored = Counter(f"{p}explored_total", "Recommend requests decoded by arm.",
                                ["arm"], registry=r)
        self.empty = Counter(f"{p}empty_total", "Recommend answers with no suggestion (no "
                             "impression is logged for them).", registry=r)
        self.spool_depth = Gauge(f"{p}spool_depth", "Events spooled and not yet acknowledged "
                                 "by the broker.", registry=r)
        self.events_spooled = Counter(f"{p}events_spooled_total", "Events appended to the "
                                      "spool.", ["topic"], registry=r)
        self.events_sent = Counter(f"{p}events_sent_total", "Events acknowledged by the "
                                   "broker.", ["topic"], registry=r)
        self.events_skipped = Counter(f"{p}events_already_sent_total", "Uncertain events "
                                      "found already in the topic (not sent again).",
                                      registry=r)
        self.spool_errors = Counter(f"{p}spool_errors_total", "Impressions that could not be "
                                    "written to the spool (disk full, I/O error): lost.",
                                    registry=r)
        self.send_failures = Counter(f"{p}send_failures_total", "Failed send attempts "
                                     "(events stay spooled).", registry=r)
        self.broker_up = Gauge(f"{p}broker_connected", "1 while the last send succeeded.",
                               registry=r)

    def set_model(self, version: str | None) -> None:
        self.model_info.clear()
        if version is not None:
            self.model_info.labels(version=version).set(1)


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        send_wrapped = _status_recorder(send, status)
        try:
            await self.app(scope, receive, send_wrapped)
        finally:
            route = _route_of(scope)
            self.metrics.requests.labels(route, scope["method"], str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _status_recorder(send: Send, status: dict[str, int]) -> Callable[[Message], Awaitable[None]]:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            status["code"] = int(message["status"])
        await send(message)

    return wrapped


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "<unmatched>"
