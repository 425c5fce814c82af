"""Crashes, restarts and scale-out lose nothing and duplicate nothing."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from streams.config import StreamsConfig
from tests.streams.conftest import read_topic, samples_by_id, wait_for_log
from tests.streams.traffic import Traffic
from toolrec.kafka import KafkaConfig

WINDOW = {"attribution_window_s": 4, "allowed_lateness_s": 1}
CFG = StreamsConfig(**WINDOW)


def assert_exactly(kafka: KafkaConfig, traffic: Traffic, timeout_s: float = 90) -> None:
    expected = traffic.expected(CFG)
    messages = read_topic(
        kafka,
        kafka.topics.samples,
        timeout_s=timeout_s,
        strict=False,
        until=lambda m: len({x.value for x in m}) >= len(expected),
    )
    got = samples_by_id(messages)
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        raise AssertionError(diagnosis(kafka, missing, extra))
    for sample_id, sample in expected.items():
        assert got[sample_id] == pytest.approx(sample), sample_id


def diagnosis(kafka: KafkaConfig, missing: list[str], extra: list[str]) -> str:
    """What went wrong: where the impressions of missing samples sit in the log, and why
    the worker dead-lettered events."""
    def everything(topic: str) -> list:
        return read_topic(kafka, topic, until=lambda m: False, timeout_s=3, strict=False)

    missing_ids = {sample_id.split(":")[0] for sample_id in missing}
    where = sorted(
        (json.loads(m.value)["request_id"], m.partition, m.offset)
        for m in everything(kafka.topics.impressions)
        if json.loads(m.value)["request_id"] in missing_ids
    )
    reasons = Counter(dict(m.headers)["reason"].decode() for m in everything(kafka.topics.dlq))
    return (f"missing {missing[:12]} ({len(missing)}), extra {extra[:12]} ({len(extra)}); "
            f"impressions of the missing (request, partition, offset): {where[:20]}; "
            f"dead letters by reason {dict(reasons)}")


# Both places the worker's engine can run (`streams.engine`), the same promises.
ENGINES = pytest.mark.parametrize("engine", ["process", "inline"])


@ENGINES
def test_sigkill_worker_mid_stream_then_restart(  # type: ignore[no-untyped-def]
        kafka: KafkaConfig, start_worker, engine: str) -> None:
    worker = start_worker(**WINDOW, engine=engine)
    traffic = Traffic(kafka)
    for _ in range(3):
        traffic.wave(30)
        time.sleep(1.0)
    # some windows have closed and some are open when the worker dies
    read_topic(kafka, kafka.topics.samples, until=lambda m: len(m) >= 1, timeout_s=60)
    traffic.wave(30)
    worker.kill()
    traffic.wave(30)
    restarted = start_worker(**WINDOW, engine=engine)
    traffic.wave(30)
    traffic.close()
    assert_exactly(kafka, traffic)
    wait_for_log(restarted, "streams: partitions=")


@ENGINES
def test_scale_out_and_hand_over(kafka: KafkaConfig, start_worker, engine: str) -> None:  # type: ignore[no-untyped-def]
    first, second = start_worker(**WINDOW, engine=engine), start_worker(**WINDOW, engine=engine)
    traffic = Traffic(kafka, seed=11, users=24)
    deadline = time.monotonic() + 60
    while not (owns_partitions(first) and owns_partitions(second)):
        assert time.monotonic() < deadline, first.log()[-2000:] + second.log()[-2000:]
        traffic.wave(10)
        time.sleep(0.5)
    traffic.wave(30)
    first.stop()  # graceful: its partitions and table state move to the other worker
    traffic.wave(30)
    traffic.close()
    assert_exactly(kafka, traffic)
    assert owned(second) == list(range(kafka.partitions))


def owned(worker) -> list[int]:  # type: ignore[no-untyped-def]
    lines = [line for line in worker.log().splitlines() if "streams: partitions=" in line]
    if not lines:
        return []
    listed = lines[-1].split("partitions=[")[1].split("]")[0]
    return [int(p) for p in listed.split(",") if p.strip()]


def owns_partitions(worker) -> bool:  # type: ignore[no-untyped-def]
    return bool(owned(worker))
