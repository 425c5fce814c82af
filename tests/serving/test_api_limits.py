"""The per-client feedback rate limit (429 + Retry-After, bounded limiter memory) and the
guard's pure parts (JSON depth scan)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from serving.guard import RateLimiter, json_depth_exceeds


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_the_rate_and_allows_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, max_clients=10, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a")
    assert 0.49 < wait <= 0.5 and RateLimiter.retry_after(wait) == 1
    assert limiter.acquire("b") == 0.0  # per client
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0 and limiter.acquire("a") > 0


def test_limiter_memory_is_bounded_whatever_the_number_of_clients() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=100, clock=Clock())
    for i in range(10_000):
        limiter.acquire(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    assert RateLimiter(rate=0, burst=1, max_clients=1).acquire("x") == 0.0  # 0 = no limit


def test_json_depth_scan_ignores_brackets_in_strings() -> None:
    assert json_depth_exceeds(b"[" * 33 + b"]" * 33, 32)
    assert not json_depth_exceeds(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 2)
    assert not json_depth_exceeds(b'{"a": "\\\\\\"[[[["}', 1)


def test_feedback_over_the_rate_gets_429_with_retry_after(
        settings_factory: Callable[..., Any], serve: Callable[..., Any]) -> None:
    server = serve(settings_factory(feedback_rate_per_s=0.5, feedback_burst=3))
    body = {"user_id": "flood-user", "request_id": "flood-1", "type": "click", "position": 1}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answers = [client.post("/v1/feedback", json=body) for _ in range(6)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429, 429]
    refused = answers[-1]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"] == "rate_limited" and "feedback_rate_per_s" in \
        refused.json()["message"]
