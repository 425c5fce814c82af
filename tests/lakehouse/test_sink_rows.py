"""The sink's per-record path without a broker: rows, their Kafka coordinates and dead
letters stay aligned when bad and unprotected events are mixed into one run."""

from __future__ import annotations

import json
from pathlib import Path

from aiokafka.structs import ConsumerRecord, TopicPartition

from contracts.events import is_pseudonym
from lakehouse.config import LakeConfig
from lakehouse.sink import Sink
from tests.lakehouse.helpers import T0, feedback, impression
from toolrec.kafka import KafkaConfig

KEY = b"test-sink-rows-key-0123456789"


def _record(tp: TopicPartition, offset: int, value: bytes | None) -> ConsumerRecord:
    size = len(value) if value is not None else -1
    return ConsumerRecord(tp.topic, tp.partition, offset, T0 + offset, 0, None, value, None,
                          -1, size, ())  # fmt: skip


def test_rows_keep_their_offsets_around_dead_letters_and_protected_events(
    tmp_path: Path,
) -> None:
    kafka = KafkaConfig()
    sink = Sink(LakeConfig(root=str(tmp_path / "lake")), kafka, tables=["events"],
                user_id_key=KEY)  # fmt: skip
    tp = TopicPartition(kafka.topics.impressions, 3)
    values: list[bytes | None] = [json.dumps(impression(i)).encode() for i in range(6)]
    values[1] = b"{not json"
    values[3] = None  # a tombstone
    values[4] = json.dumps(feedback(4)).encode()  # a feedback on the impressions topic
    sink._ingest(tp, [_record(tp, 10 + i, v) for i, v in enumerate(values)])

    buffer = sink.buffers["events"]
    columns = buffer.rows.to_table(ingest_ts=1).to_pydict()
    assert columns["event_id"] == ["imp-0", "imp-2", "imp-5"]
    assert columns["source_offset"] == [10, 12, 15]
    assert columns["source_timestamp"] == [T0 + 10, T0 + 12, T0 + 15]
    assert set(columns["source_topic"]) == {tp.topic}
    assert set(columns["source_partition"]) == {3}
    assert columns["kind"] == ["impression"] * 3
    # the helpers' ids are not pseudonyms of KEY: the rows hold the protected event
    assert all(is_pseudonym(user, KEY) for user in columns["user_id"])
    payloads = [json.loads(p) for p in columns["payload"]]
    assert [p["user_id"] for p in payloads] == columns["user_id"]
    reasons = {record.offset: error.reason for record, error in buffer.dlq}
    assert reasons == {11: "malformed_json", 13: "malformed_json", 14: "unexpected_schema"}
