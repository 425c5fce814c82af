"""Telemetry producer for client backends (kafka-python): validated events, keyed by a
pseudonymous user id, sent with acks=all and retries, batched, flushed on close.

    with TelemetryProducer(kafka, telemetry, key=contracts.events.load_user_id_key(...)) as p:
        p.feedback(raw_user_id="alice", request_id=rid, type="click", position=2)

The raw user id never leaves the process: it is replaced by HMAC-SHA256(key, raw id)
(`contracts.events.pseudonymize`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Literal

from contracts.events import Feedback, Impression, new_feedback, pseudonymize, validate_payload
from streams.config import TelemetryConfig
from toolrec.durable import now_ms
from toolrec.errors import StreamError, ValidationError
from toolrec.kafka import KafkaConfig


class TelemetryProducer:
    """Sends impressions and feedback to their topics; validates before anything is sent."""

    def __init__(self, kafka: KafkaConfig, telemetry: TelemetryConfig, *, key: bytes) -> None:
        from kafka import KafkaProducer

        self.kafka = kafka
        self.key = key
        self._producer = KafkaProducer(
            **kafka.client_kwargs(),
            acks="all",
            retries=telemetry.retries,
            linger_ms=telemetry.linger_ms,
            batch_size=telemetry.batch_size,
            request_timeout_ms=telemetry.request_timeout_ms,
            max_in_flight_requests_per_connection=1,  # keeps per-user order under retries
        )

    # -- building events -----------------------------------------------------------------
    def feedback(
        self,
        *,
        raw_user_id: str,
        request_id: str,
        type: Literal["click", "execute", "dismiss"],
        position: int,
        success: bool | None = None,
        ts: int | None = None,
    ) -> Feedback:
        """Validate and send one feedback event; returns it (with its pseudonymous user).
        Raises ValidationError naming the bad field."""
        event = new_feedback(request_id=request_id, user_id=pseudonymize(raw_user_id, self.key),
                             type=type, position=position, success=success, ts=ts)
        self.send(event)
        return event

    def send_payload(self, payload: Mapping[str, Any], *, pseudonymized: bool = False) -> None:
        """Validate and send a raw event object (e.g. a JSONL line); hashes `user_id`
        unless it already is a pseudonym of this library."""
        payload = dict(payload)
        payload.setdefault("event_id", uuid.uuid4().hex)
        payload.setdefault("ts", now_ms())
        if not pseudonymized:
            payload["user_id"] = pseudonymize(str(payload.get("user_id") or ""), self.key)
        event = validate_payload(payload)
        if not isinstance(event, Impression | Feedback):
            raise ValidationError(
                "schema", "wrong_topic", "only impressions and feedback are telemetry"
            )
        self.send(event)

    # -- sending -------------------------------------------------------------------------
    def send(self, event: Impression | Feedback) -> Any:
        """Send an already validated event to its topic, keyed by its (pseudonymous) user.
        Identifiers are pseudonymized and impression text redacted here whatever the caller
        (or `--pseudonymized`) claims: `protect_event` verifies a pseudonym, never trusts it."""
        from contracts.events import protect_event

        event = protect_event(event, self.key)
        topic = (
            self.kafka.topics.impressions
            if isinstance(event, Impression)
            else self.kafka.topics.feedback
        )
        return self._producer.send(topic, key=event.user_id.encode(), value=event.to_json_bytes())

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        self._producer.flush(timeout=timeout_s)
        self._producer.close(timeout=timeout_s)

    def __enter__(self) -> TelemetryProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def send_jsonl(
    producer: TelemetryProducer, lines: Iterable[str], *, pseudonymized: bool = False
) -> dict[str, int]:
    """Send every valid line; count and report the invalid ones (nothing half-sent)."""
    counts = {"sent": 0, "invalid": 0}
    errors: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            payload = json.loads(line)
            if not isinstance(payload, dict):
                raise ValidationError("<event>", "malformed_json", "not a JSON object")
            producer.send_payload(payload, pseudonymized=pseudonymized)
            counts["sent"] += 1
        except (json.JSONDecodeError, ValidationError) as exc:
            counts["invalid"] += 1
            errors.append(f"line {number}: {exc}")
    producer.flush()
    if errors:
        raise StreamError(
            f"sent {counts['sent']}, rejected {counts['invalid']}: " + "; ".join(errors[:10])
        )
    return counts
