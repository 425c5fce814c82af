"""The simulator's side of the wire: the recommendation API over HTTP (httpx) and the
feedback path (the telemetry producer to Kafka, or the API's `POST /v1/feedback`).

Only `Request.payload()` and feedback events (type, position, success) ever leave the
simulator; hidden intents, utilities and activity levels stay in this process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from loop.errors import ApiError
from loop.intents import Request
from loop.simulator import FeedbackEvent, Shown

log = logging.getLogger(__name__)
RETRY_STATUSES = {429, 502, 503, 504}


@dataclass(frozen=True)
class Served:
    """The API's answer to one recommend call."""

    request_id: str
    model_version: str
    shown: tuple[Shown, ...]
    latency_s: float


class ApiClient:
    """`POST /v1/recommend`, `POST /v1/feedback`, `GET /readyz` of one server.

    `transport` is the seam for tests (`httpx.MockTransport`, `httpx.ASGITransport`)."""

    def __init__(self, base_url: str, *, timeout_s: float = 120.0, retries: int = 3,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                response = self._http.post(path, json=body)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ApiError(f"POST {self.base_url}{path} failed: {exc}; is the server "
                                   "running (`toolrec serve`)?") from exc
            else:
                if response.status_code < 400:
                    return dict(response.json())
                if response.status_code not in RETRY_STATUSES or attempt == self.retries:
                    raise ApiError(f"POST {self.base_url}{path} answered "
                                   f"{response.status_code}: {response.text[:500]}")
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def recommend(self, request: Request) -> Served:
        started = time.perf_counter()
        body = self._post("/v1/recommend", request.payload())
        try:
            shown = tuple(
                Shown(int(s["position"]), str(s["text"]), s.get("tool_id"))
                for s in body["suggestions"]
            )
            return Served(str(body["request_id"]), str(body["model_version"]), shown,
                          time.perf_counter() - started)
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(f"/v1/recommend answered an unexpected body ({exc}): "
                           f"{str(body)[:500]}") from exc

    def feedback(self, raw_user_id: str, request_id: str, event: FeedbackEvent) -> None:
        body: dict[str, Any] = {"user_id": raw_user_id, "request_id": request_id,
                                "type": event.type, "position": event.position}
        if event.success is not None:
            body["success"] = event.success
        self._post("/v1/feedback", body)

    def ready(self) -> dict[str, Any] | None:
        """The /readyz body when the server is ready (model loaded), else None."""
        try:
            response = self._http.get("/readyz", timeout=5.0)
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        try:
            return dict(response.json())
        except ValueError:
            return {}

    def wait_ready(self, timeout_s: float, *, alive: Any = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = self.ready()
            if body is not None:
                return body
            if alive is not None and not alive():
                raise ApiError(f"the server at {self.base_url} exited before it was ready")
            time.sleep(0.5)
        raise ApiError(f"the server at {self.base_url} was not ready after {timeout_s:.0f} s")


class FeedbackSink(Protocol):
    def send(self, raw_user_id: str, request_id: str, events: Sequence[FeedbackEvent]) -> None:
        ...

    def close(self) -> None:
        ...


class ApiFeedback:
    """Feedback through the API's `POST /v1/feedback`."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def send(self, raw_user_id: str, request_id: str, events: Sequence[FeedbackEvent]) -> None:
        for event in events:
            self.client.feedback(raw_user_id, request_id, event)

    def close(self) -> None:
        pass


class KafkaFeedback:
    """Feedback through the client telemetry library (`streams.producer`) straight to Kafka,
    as an assistant backend would send it. The raw id is pseudonymized with the same key
    the server uses (`load_user_id_key`)."""

    def __init__(self, kafka: Any, telemetry: Any, state_dir: Path) -> None:
        from contracts.events import load_user_id_key
        from streams.producer import TelemetryProducer

        key = load_user_id_key(telemetry, state_dir)
        self.producer = TelemetryProducer(kafka, telemetry, key=key)

    def send(self, raw_user_id: str, request_id: str, events: Sequence[FeedbackEvent]) -> None:
        for event in events:
            self.producer.feedback(raw_user_id=raw_user_id, request_id=request_id,
                                   type=event.type, position=event.position,
                                   success=event.success)

    def close(self) -> None:
        self.producer.close()
