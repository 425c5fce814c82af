"""Builders of valid events for the streams tests."""

from __future__ import annotations

from typing import Any

from contracts.events import IMPRESSION_SCHEMA, Feedback, Impression, new_feedback

TEXTS = ["turn on wifi", "what is the weather", "set an alarm for 7"]
TOOLS: list[str | None] = ["connectivity.wifi.on", None, "clock.alarm.set"]


def impression(
    request_id: str, user_id: str = "p_alice", ts: int = 1_000_000, n: int = 3, **overrides: Any
) -> Impression:
    payload = {
        "schema": IMPRESSION_SCHEMA,
        "event_id": f"e-{request_id}",
        "request_id": request_id,
        "user_id": user_id,
        "session_id": "s1",
        "ts": ts,
        "model_version": "m0",
        "template_version": "t0",
        "prompt": "PROMPT|",
        "query": "how do I save battery",
        "suggestions": [
            {"position": i + 1, "text": TEXTS[i], "tool_id": TOOLS[i]} for i in range(n)
        ],
        "decoding": {"temperature": 0.7, "explore": False},
    }
    return Impression.model_validate(payload | overrides)


def feedback(
    request_id: str,
    position: int,
    user_id: str = "p_alice",
    ts: int = 1_000_500,
    type: str = "click",
    success: bool | None = None,
    event_id: str | None = None,
) -> Feedback:
    return new_feedback(
        event_id=event_id or f"f-{request_id}-{position}-{type}", request_id=request_id,
        user_id=user_id, ts=ts, type=type, position=position, success=success,
    )
