"""The Faust worker on a real broker: calibrated samples out, bad input to the DLQ."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaProducer

from tests.streams.conftest import read_topic, samples_by_id
from tests.streams.events import feedback, impression
from toolrec.kafka import KafkaConfig


def produce(kafka: KafkaConfig, messages: list[tuple[str, bytes | None, bytes]]) -> None:
    producer = KafkaProducer(**kafka.client_kwargs(), acks="all", linger_ms=5)
    for topic, key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def test_samples_and_dead_letters(kafka: KafkaConfig, start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker()
    now = int(time.time() * 1000)
    imp, fb = kafka.topics.impressions, kafka.topics.feedback
    good_feedback = feedback("r1", 1, ts=now + 10, type="execute", success=True).to_json_bytes()
    bad_event = json.loads(feedback("r1", 2, ts=now + 10).to_json_bytes()) | {"position": "two"}
    produce(
        kafka,
        [
            (imp, b"p_alice", impression("r1", ts=now).to_json_bytes()),
            (imp, b"p_alice", impression("r2", ts=now).to_json_bytes()),
            (fb, b"p_alice", feedback("r1", 1, ts=now + 5).to_json_bytes()),
            (fb, b"p_alice", b"{not json"),  # malformed
            (fb, b"p_alice", json.dumps(bad_event).encode()),  # invalid field
            (fb, b"p_alice", b'{"schema": "feedback/1"}'),  # missing fields
            (fb, b"p_alice", b"{" + b" " * 70_000 + b"}"),  # oversized
            (fb, b"p_alice", impression("r3", ts=now).to_json_bytes()),  # wrong topic
            (fb, b"p_alice", feedback("ghost", 1, ts=now + 10).to_json_bytes()),  # unknown
            (fb, b"p_alice", feedback("r1", 7, ts=now + 10).to_json_bytes()),  # not shown
            (fb, b"p_alice", good_feedback),
            (fb, b"p_alice", feedback("r1", 1, ts=now + 20, event_id="dup").to_json_bytes()),
        ],
    )
    samples = samples_by_id(read_topic(kafka, kafka.topics.samples, until=lambda m: len(m) >= 6))
    assert sorted(samples) == ["r1:1", "r1:2", "r1:3", "r2:1", "r2:2", "r2:3"]
    r1 = [samples[f"r1:{k}"] for k in (1, 2, 3)]
    assert [s["clicked"] for s in r1] == [True, False, False]
    assert [s["executed"] for s in r1] == [True, False, False]
    assert [s["is_tool_query"] for s in r1] == [True, False, True]
    # fresh user, p̄ = prior 0.1 → w_activity 1; tool click executed → 2.0 · 1.5
    assert [s["weight"] for s in r1] == pytest.approx([3.0, 1.0, 1.0])
    # r2 closes after r1 (same deadline, request id order) and sees r1's outcome:
    p_bar = (1 + 100 * 0.1) / (3 + 100)
    p_u = (1 + 20 * p_bar) / (3 + 20)
    r2 = samples["r2:1"]
    assert (r2["user_impressions"], r2["user_clicks"]) == pytest.approx((3, 1), rel=1e-4)
    assert r2["global_ctr"] == pytest.approx(p_bar, rel=1e-4)
    assert r2["w_activity"] == pytest.approx((p_u / p_bar) ** 0.5, rel=1e-4)
    assert r2["weight"] == pytest.approx((p_u / p_bar) ** 0.5, rel=1e-4)

    # a click after r1's window closed is expired, not silently counted
    produce(kafka, [(fb, b"p_alice", feedback("r1", 2, ts=now + 20_000).to_json_bytes())])
    dead = read_topic(kafka, kafka.topics.dlq, until=lambda m: len(m) >= 8)
    reasons = sorted(dict(m.headers)["reason"].decode() for m in dead)
    assert reasons == sorted(
        [
            "malformed_json",
            "invalid_field",
            "missing_field",
            "oversized",
            "wrong_topic",
            "unknown_impression",
            "position_not_shown",
            "expired_impression",
        ]
    )
    malformed = next(m for m in dead if dict(m.headers)["reason"] == b"malformed_json")
    assert malformed.value == b"{not json"  # the raw bytes, untouched
    headers = dict(malformed.headers)
    assert headers["source_topic"] == fb.encode() and int(headers["source_offset"]) == 1
