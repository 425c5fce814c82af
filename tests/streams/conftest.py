"""Real Faust workers as subprocesses (`toolrec streams worker`), stopped after each test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from infra.processes import stop_pid
from toolrec.kafka import KafkaConfig


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_pid(self.proc.pid, timeout_s=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def toolrec_env(kafka: KafkaConfig, base: Path, section: str, **settings: object) -> dict[str, str]:
    """Environment for a `toolrec` subprocess: the test broker, state under `base`."""
    env = {
        **os.environ,
        "TOOLREC_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "TOOLREC_INFRA__STATE_DIR": str(base / "state"),
    }
    env |= {f"TOOLREC_{section.upper()}__{k.upper()}": str(v) for k, v in settings.items()}
    return env


def spawn_toolrec(args: list[str], env: dict[str, str], log_path: Path) -> Worker:
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolrec", *args],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Worker(proc, log_path)


@pytest.fixture
def start_worker(tmp_path: Path, kafka: KafkaConfig) -> Iterator[Callable[..., Worker]]:
    """start_worker(**streams_settings) → a running worker; same app id = same group."""
    app_id = f"streams-{uuid.uuid4().hex[:8]}"  # unique groups: tansu defect §5c
    started: list[Worker] = []

    def start(**streams: object) -> Worker:
        n = len(started)
        settings = {
            "app_id": app_id,
            "attribution_window_s": 4,
            "allowed_lateness_s": 1,
            "stats_interval_s": 1,
            "data_dir": tmp_path / f"faust-{n}",
            # These tests follow literal ids (p_alice, r1:1) through the windows; the
            # privacy test turns the stream's own protection back on.
            "protect_events": False,
        } | streams
        worker = spawn_toolrec(
            ["streams", "worker", "--loglevel", "info"],
            toolrec_env(kafka, tmp_path, "streams", **settings),
            tmp_path / f"worker-{n}.log",
        )
        started.append(worker)
        return worker

    yield start
    stop_all(started)


@pytest.fixture
def start_sink(tmp_path: Path, kafka: KafkaConfig) -> Iterator[Callable[..., Worker]]:
    """start_sink() → a running `toolrec lake sink` writing Delta tables under tmp_path/lake."""
    started: list[Worker] = []

    def start(protect_events: bool = False, **lake: object) -> Worker:
        settings = {"root": tmp_path / "lake", "batch_max_seconds": 0.5} | lake
        env = toolrec_env(kafka, tmp_path, "lake", **settings)
        env["TOOLREC_STREAMS__PROTECT_EVENTS"] = str(protect_events)  # as start_worker
        sink = spawn_toolrec(["lake", "sink"], env, tmp_path / f"sink-{len(started)}.log")
        started.append(sink)
        return sink

    yield start
    stop_all(started)


def stop_all(processes: list[Worker]) -> None:
    for process in processes:
        if process.proc.poll() is None:
            stop_pid(process.proc.pid, timeout_s=5)


def read_topic(
    kafka: KafkaConfig,
    topic: str,
    *,
    until: Callable[[list], bool],
    timeout_s: float = 60.0,
    strict: bool = True,
) -> list:
    """All messages of `topic` from the beginning, polled until `until(messages)`."""
    consumer = KafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in range(kafka.partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        messages: list = []
        deadline = time.monotonic() + timeout_s
        while not until(messages):
            if time.monotonic() > deadline:
                if not strict:
                    return messages
                raise AssertionError(
                    f"{topic}: condition not met after {timeout_s} s with {len(messages)} messages"
                )
            for batch in consumer.poll(timeout_ms=200).values():
                messages.extend(batch)
        return messages
    finally:
        consumer.close()


def samples_by_id(messages: list) -> dict[str, dict]:
    """Samples keyed by sample_id; a re-emitted sample must be identical to the first."""
    samples: dict[str, dict] = {}
    for message in messages:
        sample = json.loads(message.value)
        first = samples.setdefault(sample["sample_id"], sample)
        assert first == sample, f"re-emitted sample differs: {first} != {sample}"
    return samples


def wait_for_log(worker: Worker, text: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in worker.log():
        if worker.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in worker log:\n{worker.log()[-3000:]}")
        time.sleep(0.1)
