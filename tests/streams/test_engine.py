"""The worker with its engine in a child process (`engine = "process"`, `streams.engine`):
the two processes live and die together, and what the child did not finish is replayed."""

from __future__ import annotations

import os
import re
import signal
import time

from streams.app import EXIT_UNDELIVERED
from tests.streams.conftest import Worker, read_topic, samples_by_id, wait_for_log
from tests.streams.events import impression
from tests.streams.test_worker import produce
from toolrec.kafka import KafkaConfig


def engine_pid(worker: Worker) -> int:
    wait_for_log(worker, "engine process")
    found = re.search(r"engine process (\d+) started", worker.log())
    assert found, worker.log()[-2000:]
    return int(found.group(1))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (ended, not reaped yet) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition, timeout_s: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_the_engine_process_samples_like_the_inline_worker(  # type: ignore[no-untyped-def]
        kafka: KafkaConfig, start_worker) -> None:
    worker = start_worker(engine="process")
    engine_pid(worker)
    now = int(time.time() * 1000)
    produce(kafka, [(kafka.topics.impressions, b"p_alice",
                     impression("r1", ts=now).to_json_bytes())])
    samples = samples_by_id(read_topic(kafka, kafka.topics.samples, until=lambda m: len(m) >= 3))
    assert sorted(samples) == ["r1:1", "r1:2", "r1:3"]
    assert "streams profile" in worker.log()  # the child's progress lines reach the log


def test_a_killed_worker_takes_its_engine_with_it(start_worker) -> None:  # type: ignore[no-untyped-def]
    worker = start_worker(engine="process")
    child = engine_pid(worker)
    assert alive(child)
    worker.kill()
    assert wait_until(lambda: not alive(child)), f"engine process {child} outlived its worker"


def test_a_dead_engine_stops_its_worker_unacknowledged(start_worker) -> None:  # type: ignore[no-untyped-def]
    worker = start_worker(engine="process")
    child = engine_pid(worker)
    os.kill(child, signal.SIGKILL)
    assert wait_until(lambda: worker.proc.poll() is not None), "the worker outlived its engine"
    assert worker.proc.returncode == EXIT_UNDELIVERED
    assert "stopping without acknowledging" in worker.log()
