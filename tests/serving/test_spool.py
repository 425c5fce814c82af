"""The durable spool and its sender: append/read/reopen, torn tails, segment clean-up, a
crash in the middle of a replay (resolved against the topic: sent exactly once), and a
broker outage under live traffic (every impression arrives once, in order)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.config import ServingConfig
from serving.metrics import Metrics
from serving.publisher import EventPublisher
from serving.spool import Cursor, OutRecord, Spool, SpoolError
from tests.serving.conftest import BASE_REQUEST, ids_of, read_topic


def records(n: int, topic: str = "toolrec.impressions", start: int = 0) -> list[OutRecord]:
    return [OutRecord(id=f"e{i}", topic=topic, key=f"user{i % 3}",
                      value=json.dumps({"event_id": f"e{i}", "i": i}))
            for i in range(start, start + n)]


def read_all(spool: Spool, start: int = 1) -> list[tuple[int, str]]:
    reader = spool.reader(start)
    try:
        return [(seq, r.id) for seq, r in reader.iter_all()]
    finally:
        reader.close()


def test_append_read_and_reopen_keep_order_and_numbering(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096)
    assert spool.append(records(50)) == 50
    spool.append(records(10, start=50))
    assert len(spool.segments()) > 1  # rolled over at 4 KiB
    assert read_all(spool) == [(i + 1, f"e{i}") for i in range(60)]
    assert read_all(spool, 42)[0] == (42, "e41")
    spool.close()
    reopened = Spool(tmp_path, segment_bytes=4096)
    assert reopened.last_seq == 60 and reopened.depth == 60
    assert reopened.append(records(1, start=60)) == 61
    assert read_all(reopened)[-1] == (61, "e60")


def test_a_torn_tail_is_cut_and_corruption_elsewhere_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(records(5))
    spool.close()
    segment = spool.segments()[-1][1]
    intact = segment.stat().st_size
    with segment.open("ab") as handle:  # a crash in the middle of an append
        handle.write(b"\xa5\x5a\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x01\x00")
    reopened = Spool(tmp_path)
    assert reopened.last_seq == 5 and segment.stat().st_size == intact
    reopened.append(records(1, start=5))
    assert [i for _, i in read_all(reopened)] == [f"e{i}" for i in range(6)]
    reopened.close()

    broken = tmp_path / "broken"
    spool = Spool(broken, segment_bytes=1024)
    for i in range(30):
        spool.append(records(1, start=i))
    spool.close()
    first, last = spool.segments()[0][1], spool.segments()[-1][1]
    assert first != last
    for segment in (last, first):  # damage inside the active segment, then a closed one
        data = bytearray(segment.read_bytes())
        data[40] ^= 0xFF  # a byte inside the first record, valid records follow
        segment.write_bytes(bytes(data))
        with pytest.raises(SpoolError, match="checksum|header"):
            Spool(broken, segment_bytes=1024)
        data[40] ^= 0xFF
        segment.write_bytes(bytes(data))
    assert Spool(broken, segment_bytes=1024).last_seq == 30


def test_a_failed_append_leaves_no_partial_record(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import serving.spool as module

    spool = Spool(tmp_path)
    spool.append(records(3))

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module.os, "fsync", disk_full)
    with pytest.raises(SpoolError, match="No space left"):
        spool.append(records(2, start=3))
    monkeypatch.undo()
    assert spool.last_seq == 3
    assert spool.append(records(1, start=5)) == 4
    spool.close()
    assert [i for _, i in read_all(Spool(tmp_path))] == ["e0", "e1", "e2", "e5"]


def test_one_process_per_spool_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolError, match="one process per spool"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()


def test_acknowledged_segments_are_deleted_and_numbering_survives(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=1024)
    for i in range(40):
        spool.append(records(1, start=i))
    assert len(spool.segments()) >= 3
    spool.mark(Cursor(40, 40, {"toolrec.impressions:0": 12}))
    assert len(spool.segments()) == 1 and spool.depth == 0
    spool.close()
    reopened = Spool(tmp_path, segment_bytes=1024)
    assert reopened.cursor == Cursor(40, 40, {"toolrec.impressions:0": 12})
    assert reopened.append(records(1, start=40)) == 41


def _publisher(kafka: Any, spool: Spool) -> EventPublisher:
    config = ServingConfig(send_timeout_s=3.0, retry_backoff_s=0.2, retry_backoff_max_s=1.0,
                           send_batch=16)
    return EventPublisher(kafka, spool, config, Metrics())


def test_a_crash_in_the_middle_of_a_replay_sends_nothing_twice(kafka: Any,
                                                                tmp_path: Path) -> None:
    """The process died after marking 20 events in flight and after 9 of them reached
    Kafka: the next start finds those 9 in the topic and sends only the other 11."""
    from kafka import KafkaProducer

    topic = kafka.topics.impressions
    spool = Spool(tmp_path)
    spool.append(records(30, topic))
    spool.mark(Cursor(0, 20, {}))  # phase 1 of a batch of 20, never acknowledged
    producer = KafkaProducer(**kafka.client_kwargs(), acks="all")
    for _, record in spool.reader(1).read(9):
        producer.send(topic, key=record.key.encode(), value=record.value.encode())
    producer.flush()
    producer.close()

    publisher = _publisher(kafka, spool)
    publisher.start()
    try:
        assert publisher.wait_drained(30), publisher.last_error
    finally:
        publisher.stop(drain_timeout_s=1)
    messages = read_topic(kafka, topic, until=lambda ms: len(ms) >= 30)
    ids = ids_of(messages, "event_id")
    assert sorted(ids) == sorted(f"e{i}" for i in range(30)) and len(ids) == 30
    assert publisher.metrics.events_skipped._value.get() == 9
    for partition in {m.partition for m in messages}:  # spool order within each partition
        seen = [int(m.value and json.loads(m.value)["i"]) for m in messages
                if m.partition == partition]
        assert seen == sorted(seen)


def test_broker_outage_under_traffic_loses_nothing_and_sends_nothing_twice(
        durable_broker: Any, settings_factory: Any, serve: Any) -> None:
    """Recommend traffic keeps being answered while the broker is down; the spooled
    impressions (and a feedback) arrive once each, in order, when it is back."""
    from infra.topics import ensure_topics

    kafka = durable_broker.kafka_config()
    ensure_topics(kafka)
    server = serve(settings_factory(kafka=kafka, model_version="t1"))
    client = httpx.Client(base_url=server.url, timeout=60)
    answered: list[str] = []

    def traffic(count: int, tag: str) -> None:
        for i in range(count):
            body = {**BASE_REQUEST, "user_id": f"{tag}-{i % 4}", "query": f"dim the screen {i}"}
            response = client.post("/v1/recommend", json=body)
            assert response.status_code == 200, response.text
            answered.append(response.json()["request_id"])

    traffic(4, "before")
    background = threading.Thread(target=traffic, args=(6, "during"))
    background.start()
    time.sleep(0.3)
    durable_broker.broker.stop()  # mid-traffic
    background.join()
    started = time.perf_counter()
    traffic(4, "down")
    assert time.perf_counter() - started < 30  # answers never wait for the broker
    feedback = client.post("/v1/feedback", json={"user_id": "down-0", "request_id":
                                                 answered[-1], "type": "click", "position": 1})
    assert feedback.status_code == 202
    deadline = time.monotonic() + 30  # the sender notices at its next send timeout
    while client.get("/readyz").json()["broker_connected"] and time.monotonic() < deadline:
        time.sleep(0.2)
    state = client.get("/readyz").json()
    assert state["ready"] and state["spool_depth"] > 0 and not state["broker_connected"]

    durable_broker.broker.start()
    publisher = server.services.publisher
    assert publisher.wait_drained(60), publisher.last_error
    messages = read_topic(kafka, kafka.topics.impressions,
                          until=lambda ms: set(answered) <= set(ids_of(ms)))
    sent = ids_of(messages)
    assert sorted(sent) == sorted(answered), "every answered request logged exactly once"
    order = {rid: i for i, rid in enumerate(answered)}
    for partition in {m.partition for m in messages}:
        in_partition = [order[json.loads(m.value)["request_id"]] for m in messages
                        if m.partition == partition]
        assert in_partition == sorted(in_partition)
    fb = read_topic(kafka, kafka.topics.feedback, until=lambda ms: len(ms) >= 1)
    assert [json.loads(m.value)["event_id"] for m in fb] == [feedback.json()["event_id"]]
    assert client.get("/readyz").json()["spool_depth"] == 0
    client.close()


def test_forget_erases_a_users_records_in_place_and_the_log_stays_readable(
        tmp_path: Path) -> None:
    """Issue 16: a forgotten user's events leave the spool (sent or not); the other records,
    their order and the reader that follows the log are untouched."""
    from serving.spool import OutRecord, Spool, read_spool

    spool = Spool(tmp_path / "spool", segment_bytes=4096, fsync=False)
    records = [OutRecord(id=f"e{i}", topic="toolrec.feedback", key="p_carol" if i % 3 == 0
                         else "p_other", value='{"user_id": "p_carol", "q": "secret"}'
                         if i % 3 == 0 else "{}") for i in range(60)]
    reader = spool.reader(1)
    spool.append(records[:30])
    first = reader.read(10)  # a live reader, mid-segment, with buffered bytes
    spool.append(records[30:])
    assert spool.forget("p_carol") == 20
    rest = first + reader.read(100)
    assert [seq for seq, _ in rest] == list(range(1, 61))
    for seq, record in rest[10:] + read_spool(tmp_path / "spool"):
        if (seq - 1) % 3 == 0:
            assert (record.topic, record.key, record.value) == ("", "", "")
        else:
            assert record.key == "p_other"
    raw = b"".join(p.read_bytes() for p in (tmp_path / "spool").glob("seg-*.log"))
    assert b"p_carol" not in raw and b"secret" not in raw
    assert spool.forget("p_carol") == 0
    spool.close()
