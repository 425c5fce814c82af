"""What the API checks before a route sees a request: body size, UTF-8, JSON depth (an ASGI
middleware), and the per-client feedback rate (a token-bucket limiter with bounded memory).

`BodyGuard` reads a request body itself, at most `limit + 1` bytes, before FastAPI parses
anything: a 10 MB body costs the server 64 KB of reading, not a parse. It answers in the
one `ErrorBody` shape:

| problem | status | error | FieldProblem.type |
|---|---|---|---|
| declared or streamed body over the route's limit | 413 | body_too_large | - |
| a JSON body that is not UTF-8 | 400 | invalid_body | invalid_utf8 |
| a JSON body nested deeper than `max_json_depth` | 400 | invalid_body | json_too_deep |

May import: the standard library, starlette, `serving.schemas`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.schemas import ErrorBody, FieldProblem

__all__ = ["BODY_ERRORS", "BodyGuard", "RateLimiter", "error_bytes", "json_depth_exceeds"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")

# The OpenAPI entries of the guard's refusals, shared by every route that takes a body.
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not UTF-8, or nests deeper than "
          "max_json_depth (checked before parsing)."},
    413: {"model": ErrorBody, "description": "The body is larger than the route's limit "
          "(max_body_bytes; max_admin_body_bytes on /v1/admin), refused before parsing."},
}


def error_bytes(error: str, message: str, fields: list[FieldProblem] | None = None) -> bytes:
    """An `ErrorBody` as JSON bytes."""
    return json.dumps(ErrorBody(error=error, message=message,
                                fields=fields or []).model_dump()).encode()


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when `[`/`{` nest deeper than `limit` (brackets inside strings do not count).
    Linear, no recursion: this runs before any parser could overflow its stack."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


class BodyGuard:
    """ASGI middleware: bound, read and pre-check every request body (see module doc)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_admin_body_bytes: int,
                 max_json_depth: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_admin_body_bytes = max_admin_body_bytes
        self.max_json_depth = max_json_depth

    def _limit(self, path: str) -> tuple[int, str]:
        if path.startswith("/v1/admin"):
            return self.max_admin_body_bytes, "serving.max_admin_body_bytes"
        return self.max_body_bytes, "serving.max_body_bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit, setting = self._limit(scope["path"])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _reply(send, 413, error_bytes(
                "body_too_large", f"the body has {declared} bytes; the limit is {limit} "
                f"({setting})"))
            return
        body = await _read(receive, limit)
        if body is None:
            await _reply(send, 413, error_bytes(
                "body_too_large", f"the body is over the limit of {limit} bytes ({setting})"))
            return
        problem = self._check(body, headers.get("content-type", ""))
        if problem is not None:
            await _reply(send, 400, error_bytes("invalid_body", problem.message, [problem]))
            return
        await self.app(scope, _replay(body), send)

    def _check(self, body: bytes, content_type: str) -> FieldProblem | None:
        if "json" not in content_type.lower() or not body:
            return None
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return FieldProblem(field="<body>", type="invalid_utf8",
                                message=f"the JSON body is not UTF-8: byte {exc.start} "
                                f"(0x{body[exc.start]:02x}) is invalid")
        if json_depth_exceeds(body, self.max_json_depth):
            return FieldProblem(field="<body>", type="json_too_deep",
                                message="the JSON body nests deeper than "
                                f"{self.max_json_depth} levels (serving.max_json_depth)")
        return None


async def _read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _reply(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """Token buckets per client: `rate` requests/s sustained, `burst` at once. At most
    `max_clients` buckets are kept (least recently seen evicted; an evicted client starts
    again with a full bucket, so eviction can only be lenient, never wrongly refuse)."""

    def __init__(self, *, rate: float, burst: int, max_clients: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, client: str) -> float:
        """0 when `client` may go on (a token is spent), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """Retry-After header value: whole seconds, at least 1."""
        return max(1, math.ceil(wait_s))
