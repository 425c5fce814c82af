"""Issue 16's closing test: known raw identifiers and personal data go in through every
entry point — the API (recommend, feedback), the telemetry CLI (with `--pseudonymized`
falsely claimed) and a producer writing straight to Kafka — through a real broker, stream
worker and lake sink; then every column of every Delta table, every retained record of
every topic and the serving spool are scanned for them. Then the user is forgotten through
the admin endpoint and the lake and spool are scanned again."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from contracts.events import pseudonymize
from toolrec.kafka import KafkaConfig

ADMIN_KEY = "privacy-test-admin-key"
ALICE, ALICE_SESSION = "alice.smith@example.com", "alice.smith@example.com:session-3"
PII_QUERY = ("call me at (415) 555-0132 or mail bob@example.org, my ssn is 123-45-6789, "
             "card 4111 1111 1111 1111, I live at 742 Evergreen Terrace")
CAROL, CAROL_REQUEST = "carol@example.net", "carol-req-1"
DAVE = "dave.raw@example.com"
# what must never be stored, per entry point
PROTECTED = {
    "api": [ALICE, "alice.smith", "session-3", "555-0132", "bob@example.org", "123-45-6789",
            "4111 1111 1111 1111", "Evergreen"],
    "telemetry": [CAROL, CAROL_REQUEST, "carol@example.net:s1", "555-0132"],
}
DIRECT = [DAVE]


def _telemetry_lines(now: int) -> str:
    impression = {
        "schema": "impression/1", "request_id": CAROL_REQUEST, "user_id": CAROL,
        "session_id": f"{CAROL}:s1", "ts": now, "model_version": "ext",
        "template_version": "ext", "prompt": f"User: {PII_QUERY}\nAssistant:",
        "query": PII_QUERY, "suggestions": [{"position": 1, "text": "turn on wifi"},
                                            {"position": 2, "text": "open settings"}],
    }
    feedback = {"schema": "feedback/1", "request_id": CAROL_REQUEST, "user_id": CAROL,
                "ts": now + 1000, "type": "click", "position": 1}
    return "\n".join(json.dumps(x) for x in (impression, feedback)) + "\n"


def _produce_direct(kafka: KafkaConfig, now: int) -> None:
    from kafka import KafkaProducer

    impression = {
        "schema": "impression/1", "event_id": "direct-1", "request_id": "dave-req-1",
        "user_id": DAVE, "session_id": "dave-s1", "ts": now, "model_version": "ext",
        "template_version": "ext", "prompt": "User: hi\nAssistant:", "query": "hi",
        "suggestions": [{"position": 1, "text": "turn on wifi"}],
    }
    producer = KafkaProducer(**kafka.client_kwargs())
    producer.send(kafka.topics.impressions, key=DAVE.encode(), value=json.dumps(impression)
                  .encode())
    producer.flush()
    producer.close()


def _lake_text(root: Path) -> dict[str, str]:
    """Every Delta table under the lake root, every column, as one JSON text per table."""
    from lakehouse import read_table
    from lakehouse.config import LakeConfig
    from lakehouse.maintenance import list_tables

    config = LakeConfig(root=str(root))
    return {name: json.dumps(read_table(config, name).to_pylist(), default=str)
            for name in list_tables(config)}


def _topics_text(kafka: KafkaConfig) -> dict[str, str]:
    """Every retained record (key, value, headers) of every topic on the broker."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    try:
        out: dict[str, list[bytes]] = {}
        tps = [TopicPartition(t, p) for t in sorted(consumer.topics())
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                for m in batch:
                    out.setdefault(m.topic, []).extend(
                        [m.key or b"", m.value or b"", *(v for _, v in m.headers or [])])
            if all(consumer.highwater(tp) is not None
                   and consumer.position(tp) >= consumer.highwater(tp) for tp in tps):
                break
        return {t: b"\n".join(parts).decode(errors="replace") for t, parts in out.items()}
    finally:
        consumer.close()


def _spool_text(spool_dir: Path) -> str:
    return b"".join(p.read_bytes() for p in sorted(spool_dir.glob("seg-*"))).decode(
        errors="replace")


def _leaks(stores: dict[str, str], needles: list[str]) -> list[str]:
    return sorted(f"{needle!r} in {store}" for store, text in stores.items()
                  for needle in needles if needle in text)


def _wait_for_samples(root: Path, rows_of: dict[str, int], timeout_s: float = 120) -> None:
    """Until each user has at least its number of sample rows in the lake (all its closed
    windows: a user seen once may still have a window in flight)."""
    from lakehouse import read_table
    from lakehouse.config import LakeConfig
    from lakehouse.maintenance import list_tables

    config, deadline = LakeConfig(root=str(root)), time.monotonic() + timeout_s
    short: set[str] = set(rows_of)
    while time.monotonic() < deadline:
        users = (read_table(config, "samples").column("user_id").to_pylist()
                 if "samples" in list_tables(config) else [])
        short = {u for u, n in rows_of.items() if users.count(u) < n}
        if not short:
            return
        time.sleep(1)
    raise AssertionError(f"samples of {short} did not land within {timeout_s} s")


def test_no_raw_identifier_or_personal_data_is_stored_anywhere(
        kafka: KafkaConfig, tmp_path: Path, settings_factory: Callable[..., Any],
        serve: Callable[..., Any], start_worker: Callable[..., Any],
        start_sink: Callable[..., Any]) -> None:
    from toolrec.cli import cli

    worker = start_worker(attribution_window_s=2, protect_events=True)
    start_sink(protect_events=True)
    settings = settings_factory(kafka=kafka, model_version="t1", admin_api_key=ADMIN_KEY)
    server = serve(settings)
    key = server.services.user_key
    now = int(time.time() * 1000)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        answers = [client.post("/v1/recommend", json={
            "user_id": ALICE, "session_id": ALICE_SESSION, "query": PII_QUERY,
            "response": "Sure, I noted 123-45-6789 and bob@example.org.",
            "recent_queries": [PII_QUERY], "context": {"battery": 40}, "n": 2}).json()
            for _ in range(2)]
        assert all("request_id" in a for a in answers), answers
        click = client.post("/v1/feedback", json={"user_id": ALICE, "type": "click",
                                                  "request_id": answers[0]["request_id"],
                                                  "position": 1})
        assert click.status_code == 202, click.text
    lines = tmp_path / "telemetry.jsonl"
    lines.write_text(_telemetry_lines(now))
    env = {"TOOLREC_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "TOOLREC_INFRA__STATE_DIR": str(settings.infra.state_dir)}  # the same key
    sent = CliRunner().invoke(cli, ["telemetry", "send", "--pseudonymized", str(lines)],
                              env=env)
    assert sent.exit_code == 0, sent.output
    _produce_direct(kafka, now)

    alice, carol, dave = (pseudonymize(raw, key) for raw in (ALICE, CAROL, DAVE))
    lake = tmp_path / "lake"
    shown = sum(len(a["suggestions"]) for a in answers)  # one sample per shown one
    _wait_for_samples(lake, {alice: shown, carol: 1, dave: 1})
    stores = {**{f"lake:{t}": x for t, x in _lake_text(lake).items()},
              **{f"topic:{t}": x for t, x in _topics_text(kafka).items()},
              "spool": _spool_text(settings.serving.spool_dir)}
    assert {"lake:events", "lake:samples", "topic:toolrec.impressions"} <= set(stores)
    assert alice in stores["lake:samples"] and carol in stores["lake:events"]
    for entry, needles in PROTECTED.items():
        assert not _leaks(stores, needles), f"{entry}: {_leaks(stores, needles)}"

    with httpx.Client(base_url=server.url, timeout=60) as client:
        forgot = client.post("/v1/admin/forget", json={"user_id": ALICE},
                             headers={"X-API-Key": ADMIN_KEY})
    assert forgot.status_code == 200, forgot.text
    result = forgot.json()
    assert result["pseudonym"] == alice and result["removed"]["samples"] >= 2
    after = {**{f"lake:{t}": x for t, x in _lake_text(lake).items()},
             "spool": _spool_text(settings.serving.spool_dir)}
    audit = after.pop("lake:privacy_audit")
    assert not _leaks(after, [alice]) and alice in audit  # the audit keeps the pseudonym only
    assert worker.proc.poll() is None

    # A producer writing straight to Kafka: the stream worker pseudonymizes it before any
    # state, sample or table holds it; only the source topic keeps what the producer wrote
    # (until the topic's retention), which no stage downstream can rewrite.
    source = "topic:toolrec.impressions"
    assert _leaks({source: stores[source]}, DIRECT), "the direct event was not produced"
    derived = {name: text for name, text in stores.items() if name != source}
    assert not _leaks(derived, DIRECT), _leaks(derived, DIRECT)
