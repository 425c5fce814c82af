"""Records Faust never handed to the worker are found and read back (streams.gaps)."""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaProducer

from streams.gaps import read_range, skipped_range
from toolrec.errors import StreamError
from toolrec.kafka import KafkaConfig


def test_contiguous_offsets_and_replays_are_no_gap() -> None:
    assert not skipped_range(handled=41, committed=None, offset=42)
    assert not skipped_range(handled=41, committed=30, offset=17)  # a seek back: replay
    assert not skipped_range(handled=None, committed=42, offset=42)  # starts where committed
    assert not skipped_range(handled=None, committed=42, offset=41)
    assert not skipped_range(handled=None, committed=None, offset=99)  # nothing to compare


def test_a_jump_is_the_range_in_between() -> None:
    assert skipped_range(handled=42, committed=None, offset=65) == range(43, 65)
    assert skipped_range(handled=None, committed=31, offset=54) == range(31, 54)


def test_read_range_returns_exactly_the_missing_records(kafka: KafkaConfig) -> None:
    topic = kafka.topics.impressions
    producer = KafkaProducer(**kafka.client_kwargs(), linger_ms=20, acks="all")
    for batch in range(3):  # several multi-record batches: ranges start mid-batch
        for i in range(10):
            producer.send(topic, value=f"{batch}-{i}".encode(), partition=1)
        producer.flush()
    producer.close()

    records = asyncio.run(read_range(kafka.client_kwargs(), topic, 1, range(7, 23)))
    assert [r.offset for r in records] == list(range(7, 23))
    assert [r.value for r in records][:4] == [b"0-7", b"0-8", b"0-9", b"1-0"]
    assert asyncio.run(read_range(kafka.client_kwargs(), topic, 1, range(0))) == []


def test_read_range_fails_loudly_when_the_records_do_not_come(kafka: KafkaConfig) -> None:
    with pytest.raises(StreamError, match="could not re-read"):
        asyncio.run(read_range(kafka.client_kwargs(), kafka.topics.feedback, 0, range(5, 9),
                               timeout_s=1.0))


def test_the_worker_re_reads_what_faust_skipped(kafka: KafkaConfig) -> None:
    """The Processor's bookkeeping finds the hole: after the last handled offset, or from the
    group's committed offset before the first event of an assignment."""
    from streams.app import create_app
    from streams.config import StreamsConfig

    topic = kafka.topics.impressions
    producer = KafkaProducer(**kafka.client_kwargs(), acks="all")
    for i in range(8):
        producer.send(topic, value=f"v{i}".encode(), partition=2)
    producer.flush()
    producer.close()
    cfg = StreamsConfig(app_id="gap-test-group", engine="inline")  # the Processor in reach
    processor = create_app(cfg, kafka).processor  # type: ignore[attr-defined]

    async def skipped(offset: int) -> list[int]:
        return [r.offset for r in await processor._skipped_records(topic, 2, offset)]

    # no offsets committed for the group: Faust should have started at 0
    assert asyncio.run(skipped(3)) == [0, 1, 2]
    processor.positions[(topic, 2)] = 3
    assert asyncio.run(skipped(4)) == []
    assert asyncio.run(skipped(7)) == [4, 5, 6]
